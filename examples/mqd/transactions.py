"""MULTI, EXEC, DISCARD, WATCH, UNWATCH, with Redis's rules (src/multi.c).

Inside MULTI, :func:`mqd.table.execute` queues every command but those
flagged ``nomulti``: MULTI, EXEC, DISCARD and WATCH, as in Redis (UNWATCH
is queued). A command refused while queueing (unknown, wrong arity) makes
EXEC answer EXECABORT; a WATCHed key that changed makes it answer the null
array; otherwise EXEC runs the queue, a blocking command that finds
nothing answering its ``Block.denied_reply`` at once, and answers the list
of replies, errors among them; a queued SUBSCRIBE contributes the messages
it pushed, as in Redis.

A watched key that expires before EXEC has changed, as in Redis. The
keyspace deletes expired keys without telling the watchers, so WATCH notes
the deadline of each key it watches and EXEC compares it with the clock;
every other change to a key's deadline touches the key anyway. A key
already expired when watched counts as missing: its deletion is no change.

The writes of a transaction reach the append-only log wrapped in MULTI and
EXEC, so that replaying the log never applies half of one. As in Redis 7,
the wrapping is there only when the transaction logged two entries or more:
one write is atomic by itself, and a transaction that wrote nothing logs
nothing.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

from mqd.replies import NULL_ARRAY, OK, Err, Reply
from mqd.table import NO_REPLY, Argv, Client, State, command, run_queued

__all__ = ["EXECABORT"]

EXECABORT = Err(b"EXECABORT Transaction discarded because of previous errors.")

# The deadline each client's watched keys had when watched (keys that had
# none are not here): what EXEC compares with the clock.
_deadlines: weakref.WeakKeyDictionary[Client, dict[tuple[int, bytes], int]] = (
    weakref.WeakKeyDictionary()
)


@command("multi", arity=1, flags="nomulti loading fast", keys=(0, 0, 0))
def multi(client: Client, argv: Argv) -> Reply:
    """Start a transaction: commands are queued until EXEC."""
    if client.multi is not None:
        return Err(b"ERR MULTI calls can not be nested")
    client.multi = []
    return OK


@command("exec", arity=1, flags="nomulti loading", keys=(0, 0, 0))
def exec_(client: Client, argv: Argv) -> Reply:
    """Run the queued commands: their replies, or nothing if refused."""
    queued = client.multi
    if queued is None:
        return Err(b"ERR EXEC without MULTI")
    failed = client.multi_failed
    changed = client.dirty or _watched_key_expired(client)
    _end_transaction(client)
    if failed:
        return EXECABORT
    if changed:
        return NULL_ARRAY
    replies: list[Reply] = []
    with _logged_as_one(client.state):
        for queued_argv in queued:
            replies += _run(client, queued_argv)
    return replies


@command("discard", arity=1, flags="nomulti loading fast", keys=(0, 0, 0))
def discard(client: Client, argv: Argv) -> Reply:
    """Drop the queued commands and every watch."""
    if client.multi is None:
        return Err(b"ERR DISCARD without MULTI")
    _end_transaction(client)
    return OK


@command("watch", arity=-2, flags="nomulti loading fast", keys=(1, -1, 1))
def watch(client: Client, argv: Argv) -> Reply:
    """Make the next EXEC fail if one of these keys changes first."""
    if client.multi is not None:
        return Err(b"ERR WATCH inside MULTI is not allowed")
    if client.dirty:  # EXEC fails already: watching more changes nothing
        return OK
    state, index, db = client.state, client.db_index, client.db
    if not client.watched:  # what an earlier watch noted is over
        _deadlines.pop(client, None)
    for key in argv[1:]:
        watched = (index, key)
        if watched in client.watched:
            continue
        client.watched.add(watched)
        state.watchers.setdefault(watched, set()).add(client)
        # get() first: a key already expired is deleted, and counts as missing.
        if db.get(key) is not None and key in db.expires:
            _deadlines.setdefault(client, {})[watched] = db.expires[key]
    return OK


@command("unwatch", arity=1, flags="loading fast", keys=(0, 0, 0))
def unwatch(client: Client, argv: Argv) -> Reply:
    """Forget every watched key (and that one changed)."""
    client.unwatch()
    _deadlines.pop(client, None)
    return OK


def _run(client: Client, argv: Argv) -> list[Reply]:
    """Run one queued command: its reply, or, for SUBSCRIBE and its kin,
    the messages it pushed, which Redis writes into EXEC's array in place
    of a reply (pubsub.tcl, "unsubscribe inside multi").

    A (un)subscribe of several channels gives one element each, so EXEC's
    array is longer than the queue; Redis writes the same elements but
    counts only the queue (redis/redis#12207), which breaks its framing.
    What another command pushes to this client (PUBLISH to itself) goes
    out of band at once, so before EXEC's reply, where Redis holds it
    until after (server.pending_push_messages).
    """
    pushed: list[Reply] = []
    deliver = client.deliver
    client.deliver = pushed.append
    try:
        reply = run_queued(client, argv)
    finally:
        client.deliver = deliver
    if reply is NO_REPLY:
        return pushed
    for message in pushed:
        deliver(message)
    return [reply]


def _end_transaction(client: Client) -> None:
    """Leave MULTI, forgetting the queue, its errors and every watch."""
    client.discard_transaction()
    _deadlines.pop(client, None)


def _watched_key_expired(client: Client) -> bool:
    """Whether a key that lived when watched has reached its deadline."""
    deadlines = _deadlines.get(client)
    if not deadlines:
        return False
    now = client.state.milliseconds()
    return any(
        deadline <= now
        for watched, deadline in deadlines.items()
        if watched in client.watched
    )


@contextlib.contextmanager
def _logged_as_one(state: State) -> Iterator[None]:
    """Hold what is logged meanwhile; then log it, inside MULTI ... EXEC
    when it is more than one entry."""
    log = state.log
    if log is None:
        yield
        return
    held: list[tuple[int, Argv]] = []
    # Nothing else runs during EXEC: every entry logged meanwhile is ours.
    state.log = lambda db, argv: held.append((db, argv))
    try:
        yield
    finally:
        state.log = log
        if len(held) > 1:
            # MULTI and EXEC carry the database of their neighbours, so the
            # log's writer adds no SELECT for them.
            log(held[0][0], [b"MULTI"])
            for db, argv in held:
                log(db, argv)
            log(held[-1][0], [b"EXEC"])
        elif held:
            log(*held[0])
