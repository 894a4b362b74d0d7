"""The command table and the state commands run against. No I/O, no loop.

Each command is one small function registered with :func:`command`:

    @command("llen", arity=2, flags="readonly fast")
    def llen(client: Client, argv: Argv) -> Reply:
        value = client.db.get(argv[1])
        return 0 if value is None else len(value)

The table (``COMMANDS``, by lower-case name) is the documentation:
``COMMAND`` and ``COMMAND DOCS`` answer from it. :func:`execute` applies
Redis's rules before a command runs, in Redis's order and with its error
texts: unknown command, wrong arity, authentication, pub/sub mode
(RESP2), and queueing inside MULTI.

A command that changes data says so: ``client.touch(key)`` (WATCH sees it,
clients blocked on the key get a chance) and ``client.propagate(argv)``
(what goes to the append-only log: the effect, so that replaying it gives
the same data; BLPOP served later is logged as the LPOP it was). A
blocking command that finds nothing returns a :class:`Block`; the server
parks the client and calls ``Block.retry`` in FIFO order as the keys are
pushed to. A command that pushed all its replies (SUBSCRIBE) returns
:data:`NO_REPLY`: the server writes nothing more for it.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections.abc import Callable
from typing import Any, Final

import attrs

from mqd.keyspace import DATABASES, Database
from mqd.replies import NULL_ARRAY, QUEUED, Err, Push, Reply

__all__ = [
    "COMMANDS",
    "NO_REPLY",
    "Argv",
    "Block",
    "Client",
    "Flag",
    "NoReply",
    "Spec",
    "State",
    "command",
    "execute",
    "make_spec",
    "run_queued",
]

Argv = list[bytes]


class Flag(enum.Flag):
    """What the rules before a command need to know of it."""

    NONE = 0
    WRITE = enum.auto()  # changes data: logged, refused nowhere here yet
    READONLY = enum.auto()
    FAST = enum.auto()
    BLOCKING = enum.auto()  # may return a Block
    NOAUTH = enum.auto()  # allowed before AUTH (AUTH, HELLO, QUIT)
    PUBSUB = enum.auto()  # allowed in RESP2 pub/sub mode
    NOMULTI = enum.auto()  # runs at once inside MULTI (EXEC, DISCARD, ...)
    LOADING = enum.auto()  # allowed in the append-only log being replayed


@attrs.frozen
class Spec:
    """One command: ``arity`` as Redis counts it (the name included;
    negative: at least that many), and its key positions for ``COMMAND``."""

    name: str
    arity: int
    flags: Flag
    run: Callable[[Client, Argv], Reply | Block | NoReply]
    summary: str
    first_key: int = 1
    last_key: int = 1
    step: int = 1
    # What the rules before every command read, worked out once: an
    # enum.Flag test costs about a microsecond, a bool attribute nothing.
    bname: bytes = attrs.field(init=False)
    noauth: bool = attrs.field(init=False)
    nomulti: bool = attrs.field(init=False)

    @bname.default
    def _bname(self) -> bytes:
        return self.name.encode()

    @noauth.default
    def _noauth(self) -> bool:
        return bool(self.flags & Flag.NOAUTH)

    @nomulti.default
    def _nomulti(self) -> bool:
        return bool(self.flags & Flag.NOMULTI)


COMMANDS: dict[bytes, Spec] = {}


def command(
    name: str,
    arity: int,
    flags: str = "",
    *,
    keys: tuple[int, int, int] = (1, 1, 1),
) -> Callable[[Callable[[Client, Argv], Any]], Callable[[Client, Argv], Any]]:
    """Register the decorated function as the command ``name``.

    ``flags`` names :class:`Flag` members, space-separated, in lower case.
    The function's docstring's first line is its summary (COMMAND DOCS).
    """

    def register(run: Callable[[Client, Argv], Any]) -> Callable[[Client, Argv], Any]:
        assert name.encode() not in COMMANDS, f"{name} registered twice"
        COMMANDS[name.encode()] = make_spec(name, arity, flags, run, keys=keys)
        return run

    return register


def make_spec(
    name: str,
    arity: int,
    flags: str,
    run: Callable[[Client, Argv], Any],
    *,
    keys: tuple[int, int, int],
) -> Spec:
    """The Spec a registration describes (:func:`command`, and
    :func:`mqd.subcommands.subcommand`): ``flags`` named as there, the
    summary the first line of ``run``'s docstring."""
    value = Flag.NONE
    for word in flags.split():
        value |= Flag[word.upper()]
    summary = (run.__doc__ or "").strip().split("\n")[0]
    return Spec(name, arity, value, run, summary, *keys)


class _Default(enum.Enum):
    AS_TIMEOUT = "as timeout_reply"


@attrs.define
class Block:
    """A blocking command found nothing: park the client on ``keys``.

    ``retry`` is called when one of the keys was pushed to, in the order
    clients blocked; it returns the reply, or None to go on waiting.
    ``timeout`` is in seconds, 0 for ever; at the deadline the client gets
    ``timeout_reply``. Where the client may not block (a command EXEC
    runs) it gets ``denied_reply`` at once, ``timeout_reply`` unless set:
    Redis's BLMOVE and BRPOPLPUSH answer the null bulk string there, though
    they time out with the null array.
    """

    keys: list[bytes]
    timeout: float
    retry: Callable[[], Reply | None]
    timeout_reply: Reply = NULL_ARRAY
    denied_reply: Reply | _Default = _Default.AS_TIMEOUT


class NoReply(enum.Enum):
    """The command's replies were all pushed (SUBSCRIBE and its kin send one
    message per channel through ``client.push``): the server writes nothing
    more for it. Inside EXEC those messages take the place of its reply.

    An enum of one member so that ``result is not NO_REPLY`` narrows the
    type for mypy, as no comparison with a plain instance does.
    """

    NO_REPLY = "no reply"


NO_REPLY: Final = NoReply.NO_REPLY


class State:
    """Everything the commands share: databases, clients, channels, log."""

    def __init__(
        self,
        *,
        requirepass: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock  # seconds since the epoch
        self.dbs = [Database(self.milliseconds) for _ in range(DATABASES)]
        self.requirepass = requirepass
        self.clients: dict[int, Client] = {}
        self._ids = itertools.count(1)
        # Pub/sub: who hears a channel, who a pattern.
        self.channels: dict[bytes, set[Client]] = {}
        self.patterns: dict[bytes, set[Client]] = {}
        # WATCH: who watches (db, key).
        self.watchers: dict[tuple[int, bytes], set[Client]] = {}
        # Keys pushed to since the server last served blocked clients.
        self.ready: set[tuple[int, bytes]] = set()
        # The keys clients are blocked on, with the server's line of them:
        # kept by the server; a push marks a key ready only if it is here
        # (Redis's signalKeyAsReady), so a push nobody waits for costs
        # nothing more.
        self.waiting: dict[tuple[int, bytes], Any] = {}
        # The append-only log's append(db, argv), when there is a log.
        self.log: Callable[[int, Argv], None] | None = None
        # CONFIG GET answers from here (redis-benchmark asks at start), and
        # INFO. The server sets "port" to the TCP port it listens on; "0"
        # is Redis's own for none.
        self.config: dict[bytes, bytes] = {
            b"save": b"",
            b"appendonly": b"no",
            b"databases": str(DATABASES).encode(),
            b"maxclients": b"10000",
            b"timeout": b"0",
            b"port": b"0",
        }
        # INFO's blocked_clients: the server, which parks them, sets this.
        self.blocked_clients: Callable[[], int] = lambda: 0
        self.started = clock()
        # While the log is replayed time stands still, as in Redis: no key
        # expires half way through, and a deadline in the past is kept
        # until the key is next read.
        self.loading = False
        self.commands_processed = 0
        self.connections_received = 0

    def milliseconds(self) -> int:
        return 0 if self.loading else int(self.clock() * 1000)

    def connect(self, deliver: Callable[[Reply], None], address: str = "") -> Client:
        """A new client, which gets out-of-band replies through ``deliver``."""
        client = Client(
            self,
            next(self._ids),
            deliver,
            address,
            authenticated=self.requirepass is None,
            created=self.clock(),
        )
        self.clients[client.id] = client
        self.connections_received += 1
        return client

    def disconnect(self, client: Client) -> None:
        """Forget ``client``: its subscriptions and watches go with it."""
        self.clients.pop(client.id, None)
        client.unwatch()
        self.unsubscribe_all(client)

    def subscribe(self, client: Client, name: bytes, *, pattern: bool = False) -> None:
        """``client`` hears the channel (or with ``pattern``, the pattern)
        ``name``; a second time changes nothing."""
        mine, registry = self._subscriptions(client, pattern)
        mine.add(name)
        registry.setdefault(name, set()).add(client)

    def unsubscribe(
        self, client: Client, name: bytes, *, pattern: bool = False
    ) -> None:
        """``client`` no longer hears channel (or pattern) ``name``. A name
        nobody hears is dropped, so that such names do not pile up."""
        mine, registry = self._subscriptions(client, pattern)
        mine.discard(name)
        members = registry.get(name)
        if members is not None:
            members.discard(client)
            if not members:
                del registry[name]

    def unsubscribe_all(self, client: Client) -> None:
        """``client`` leaves every channel and pattern, telling no one
        (RESET, disconnect)."""
        for channel in list(client.channels):
            self.unsubscribe(client, channel)
        for pattern in list(client.patterns):
            self.unsubscribe(client, pattern, pattern=True)

    def _subscriptions(
        self, client: Client, pattern: bool
    ) -> tuple[set[bytes], dict[bytes, set[Client]]]:
        """The client's names and the registry of who hears each."""
        if pattern:
            return client.patterns, self.patterns
        return client.channels, self.channels

    def touch(self, db: int, key: bytes) -> None:
        """``key`` of ``db`` changed: WATCHers fail their EXEC."""
        for client in self.watchers.get((db, key), ()):
            client.dirty = True

    def touch_db(self, index: int, replaced_with: Database | None = None) -> None:
        """Database ``index`` is emptied (FLUSHDB, FLUSHALL) or is about to
        get ``replaced_with``'s data (SWAPDB): its watched keys that exist in
        either have changed, as Redis's touchAllWatchedKeysInDb (src/db.c)
        decides; a key watched while missing or expired, and still missing,
        has not. Call it before the data changes."""
        emptied = self.dbs[index]
        for (db, key), clients in self.watchers.items():
            if db == index and (
                emptied.get(key) is not None
                or (replaced_with is not None and replaced_with.get(key) is not None)
            ):
                for client in clients:
                    client.dirty = True


@attrs.define(eq=False)
class Client:
    """One connection's state: database, protocol, transaction, subscriptions."""

    state: State
    id: int
    deliver: Callable[[Reply], None]  # out-of-band: pub/sub messages
    address: str
    authenticated: bool
    created: float
    db_index: int = 0
    resp3: bool = False
    name: bytes = b""
    lib_name: bytes = b""
    lib_ver: bytes = b""
    # MULTI: the queued commands (None outside one), and whether one was
    # refused while queueing (EXEC then aborts).
    multi: list[Argv] | None = None
    multi_failed: bool = False
    watched: set[tuple[int, bytes]] = attrs.Factory(set)
    dirty: bool = False  # a watched key changed: EXEC fails
    channels: set[bytes] = attrs.Factory(set)
    patterns: set[bytes] = attrs.Factory(set)
    last_command: bytes = b""
    close_after_reply: bool = False  # QUIT

    @property
    def db(self) -> Database:
        return self.state.dbs[self.db_index]

    @property
    def subscribed(self) -> int:
        return len(self.channels) + len(self.patterns)

    def touch(self, key: bytes, *, pushed: bool = False) -> None:
        """``key`` changed; ``pushed``: it may now serve blocked clients."""
        if self.state.watchers:
            self.state.touch(self.db_index, key)
        if pushed:
            state = self.state
            if state.waiting and (self.db_index, key) in state.waiting:
                state.ready.add((self.db_index, key))

    def propagate(self, argv: Argv) -> None:
        """Log ``argv`` (the effect of this command) to the append-only log."""
        log = self.state.log
        if log is not None:
            log(self.db_index, argv)

    def discard_transaction(self) -> None:
        """Leave MULTI, forgetting the queue, its errors and every watch
        (EXEC, DISCARD, RESET: Redis's discardTransaction)."""
        self.multi = None
        self.multi_failed = False
        self.unwatch()

    def unwatch(self) -> None:
        for watched in self.watched:
            clients = self.state.watchers.get(watched)
            if clients is not None:
                clients.discard(self)
                if not clients:
                    del self.state.watchers[watched]
        self.watched.clear()
        self.dirty = False

    def push(self, *items: Reply) -> None:
        """Send out-of-band data (a pub/sub message) to this client."""
        self.deliver(Push(list(items)))


# ---------------------------------------------------------------- rules

_ALLOWED_SUBSCRIBED = frozenset(
    {
        b"subscribe",
        b"unsubscribe",
        b"psubscribe",
        b"punsubscribe",
        b"ping",
        b"quit",
        b"reset",
    }
)


def unknown_command(argv: Argv) -> Err:
    """Redis's text, byte for byte: the name, then arguments while the list
    is under 128 bytes; CR and LF become spaces (an error is one line)."""
    args = b""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += b"'%s' " % arg[: 128 - len(args)]
    text = b"ERR unknown command '%s', with args beginning with: %s" % (
        argv[0][:128],
        args,
    )
    return Err(text.replace(b"\r", b" ").replace(b"\n", b" "))


def wrong_arity(name: str) -> Err:
    return Err(b"ERR wrong number of arguments for '%s' command" % name.encode())


NOAUTH = Err(b"NOAUTH Authentication required.")


# Names as clients spell them (LPUSH, lpush) to their command: lower()
# would make a new bytes per command. Bounded, so that a client inventing
# names cannot grow it; only registered commands are kept.
_SPELLINGS: dict[bytes, Spec] = {}
_SPELLINGS_MAX = 4096


def lookup(name: bytes) -> Spec | None:
    """The command called ``name``, in any case; None if there is none."""
    spec = _SPELLINGS.get(name)
    if spec is None:
        spec = COMMANDS.get(name.lower())
        if spec is not None and len(_SPELLINGS) < _SPELLINGS_MAX:
            _SPELLINGS[name] = spec
    return spec


def execute(client: Client, argv: Argv) -> Reply | Block | NoReply:
    """Run one command for ``client``, with Redis's rules around it, in
    Redis's order: unknown command, arity, authentication, RESP2 pub/sub
    mode, queueing inside MULTI.

    This runs once per command, so it is one function: a client in no
    special state pays a dict lookup and a few attribute reads for the
    rules.
    """
    client.state.commands_processed += 1
    spec = _SPELLINGS.get(argv[0]) or lookup(argv[0])
    if spec is None:
        error = unknown_command(argv)
    else:
        arity, given = spec.arity, len(argv)
        if given != arity and (arity > 0 or given < -arity):
            error = wrong_arity(spec.name)
        elif not client.authenticated and not spec.noauth:
            error = NOAUTH
        else:
            client.last_command = spec.bname
            if (
                (client.channels or client.patterns)
                and not client.resp3
                and spec.bname not in _ALLOWED_SUBSCRIBED
            ):
                return _rejected(client, argv, _subscribed_only(spec))
            if client.multi is not None and not spec.nomulti:
                client.multi.append(argv)
                return QUEUED
            return spec.run(client, argv)
    if client.multi is not None:
        client.multi_failed = True  # EXEC will abort
    return _rejected(client, argv, error)


def _subscribed_only(spec: Spec) -> Err:
    return Err(
        b"ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / "
        b"PING / QUIT / RESET are allowed in this context" % spec.bname
    )


def _rejected(client: Client, argv: Argv, error: Err) -> Err:
    """``error``, unless the command refused was EXEC: then, as Redis's
    rejectCommand does, the transaction is discarded and says why."""
    if argv[0].lower() != b"exec":
        return error
    client.discard_transaction()
    reason = error.text.removeprefix(b"ERR ")
    return Err(b"EXECABORT Transaction discarded because of: " + reason)


def run_queued(client: Client, argv: Argv) -> Reply | NoReply:
    """Run a command EXEC took from the queue (checked when it was queued).

    A blocking command that finds nothing answers its ``denied_reply`` at
    once, as in Redis.
    """
    spec = lookup(argv[0])
    assert spec is not None  # checked when it was queued
    client.state.commands_processed += 1
    result = spec.run(client, argv)
    if not isinstance(result, Block):
        return result
    if result.denied_reply is _Default.AS_TIMEOUT:
        return result.timeout_reply
    return result.denied_reply
