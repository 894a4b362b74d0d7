"""Connection and server commands: what clients send before and around data.

PING, ECHO, QUIT, RESET, AUTH, HELLO; CLIENT, CONFIG and COMMAND with
their subcommands; INFO. These are what redis-cli, redis-py and
redis-benchmark send when they connect (HELLO 3, CLIENT SETINFO, AUTH,
CONFIG GET save and appendonly, COMMAND DOCS, INFO SERVER), so their
replies follow Redis's shapes closely; error texts are Redis's own.

Passwords are compared in constant time, as SHA-256 digests the way Redis
does, so that neither the time taken nor its dependence on length says
anything about the password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import platform
import secrets
import struct
from collections.abc import Callable

from mqd.args import SYNTAX_ERROR, glob_match, parse_int, parse_long
from mqd.replies import OK, Err, Map, Reply, Set, Simple, Verbatim
from mqd.table import (
    COMMANDS,
    Argv,
    Block,
    Client,
    Flag,
    NoReply,
    Spec,
    State,
    command,
    wrong_arity,
)

__all__ = ["REDIS_VERSION"]

#: The Redis version HELLO and INFO report. Not mqd's own: clients gate
#: features on it (redis-cli drops from its help every command newer than
#: the server), and 7.2.0 is the newest Redis whose connection commands
#: mqd answers: HELLO 3 (6.0), RESET (6.2), COMMAND DOCS (7.0), CLIENT
#: SETINFO (7.2).
REDIS_VERSION = b"7.2.0"

# Redis's run_id: random, one per server process (one State per process).
_RUN_ID = secrets.token_hex(20).encode()

WRONGPASS = Err(b"WRONGPASS invalid username-password pair or user is disabled.")
_NO_PASSWORD = Err(
    b"ERR AUTH <password> called without any password configured for the "
    b"default user. Are you sure your configuration is correct?"
)
_HELLO_NOAUTH = Err(
    b"NOAUTH HELLO must be called with the client already authenticated, "
    b"otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
    b"authenticate the client and select the RESP protocol version at the "
    b"same time"
)
_BAD_NAME = Err(
    b"ERR Client names cannot contain spaces, newlines or special characters."
)


# ------------------------------------------------------------ connection


@command("ping", arity=-1, flags="pubsub fast", keys=(0, 0, 0))
def ping(client: Client, argv: Argv) -> Reply:
    """Returns the server's liveliness response.

    In RESP2 pub/sub mode the reply is ``[b"pong", message or b""]``, an
    array a subscriber can tell from its messages (Redis, commit 2264b981).
    """
    if len(argv) > 2:
        return wrong_arity("ping")
    if client.subscribed and not client.resp3:
        return [b"pong", argv[1] if len(argv) == 2 else b""]
    return argv[1] if len(argv) == 2 else Simple(b"PONG")


@command("echo", arity=2, flags="loading fast", keys=(0, 0, 0))
def echo(client: Client, argv: Argv) -> Reply:
    """Returns the given string."""
    return argv[1]


@command("quit", arity=-1, flags="noauth pubsub nomulti loading fast", keys=(0, 0, 0))
def quit_(client: Client, argv: Argv) -> Reply:
    """Closes the connection.

    The server closes it once this OK is written; replies already queued
    go first.
    """
    client.close_after_reply = True
    return OK


@command("reset", arity=1, flags="noauth pubsub nomulti loading fast", keys=(0, 0, 0))
def reset(client: Client, argv: Argv) -> Reply:
    """Resets the connection.

    As if newly connected: database 0, RESP2, unauthenticated again if
    there is a password, out of MULTI, no watches, no subscriptions (left
    without a message each), no name. The library name and version stay:
    they still describe the library on this connection.
    """
    client.db_index = 0
    client.resp3 = False
    if client.state.requirepass is not None:
        client.authenticated = False
    client.discard_transaction()
    client.state.unsubscribe_all(client)
    client.name = b""
    return Simple(b"RESET")


@command("auth", arity=-2, flags="noauth loading fast", keys=(0, 0, 0))
def auth(client: Client, argv: Argv) -> Reply:
    """Authenticates the connection.

    ``AUTH password`` or ``AUTH default password``: mqd's one user is
    Redis's ``default``. Without ``--requirepass`` the default user takes
    any password (Redis's ``nopass``), but the one-argument form is an
    error, as in Redis. A wrong password leaves the client as it was.
    """
    if len(argv) > 3:
        return SYNTAX_ERROR
    if len(argv) == 2:
        if client.state.requirepass is None:
            return _NO_PASSWORD
        user, password = b"default", argv[1]
    else:
        user, password = argv[1], argv[2]
    return OK if _authenticate(client, user, password) else WRONGPASS


@command("hello", arity=-1, flags="noauth loading fast", keys=(0, 0, 0))
def hello(client: Client, argv: Argv) -> Reply:
    """Handshakes with the Redis server.

    ``HELLO [protover [AUTH user password] [SETNAME name]]``: the options
    are all checked first, then AUTH is tried before anything changes;
    the protocol switches last, so the reply is already in the new one.
    """
    version = 0
    if len(argv) >= 2:
        parsed = parse_long(
            argv[1], message=b"Protocol version is not an integer or out of range"
        )
        if isinstance(parsed, Err):
            return parsed
        if parsed not in (2, 3):
            return Err(b"NOPROTO unsupported protocol version")
        version = parsed
    credentials: tuple[bytes, bytes] | None = None
    name: bytes | None = None
    index = 2
    while index < len(argv):
        option, more = argv[index].lower(), len(argv) - 1 - index
        if option == b"auth" and more >= 2:
            credentials = (argv[index + 1], argv[index + 2])
            index += 3
        elif option == b"setname" and more >= 1:
            name = argv[index + 1]
            if not _printable(name):
                return _BAD_NAME
            index += 2
        else:
            return Err(b"ERR Syntax error in HELLO option '%s'" % argv[index])
    if credentials is not None and not _authenticate(client, *credentials):
        return WRONGPASS
    if not client.authenticated:
        return _HELLO_NOAUTH
    if name is not None:
        client.name = name
    if version:
        client.resp3 = version == 3
    return Map(
        [
            (b"server", b"redis"),
            (b"version", REDIS_VERSION),
            (b"proto", 3 if client.resp3 else 2),
            (b"id", client.id),
            (b"mode", b"standalone"),
            (b"role", b"master"),
            (b"modules", []),
        ]
    )


def _authenticate(client: Client, user: bytes, password: bytes) -> bool:
    """Authenticate ``client`` as ``user`` if ``password`` is right."""
    if user != b"default":
        return False
    expected = client.state.requirepass
    # Digests of equal length, as Redis compares (src/acl.c): the time
    # compare_digest takes says nothing of the password's length either.
    if expected is not None and not hmac.compare_digest(
        hashlib.sha256(password).digest(), hashlib.sha256(expected).digest()
    ):
        return False
    client.authenticated = True
    return True


# ----------------------------------------------------------- subcommands
#
# CLIENT, CONFIG and COMMAND are containers, as in Redis 7: each
# subcommand has its own arity, flags and summary, and COMMAND and
# COMMAND DOCS list them (redis-cli's help for CLIENT SETNAME comes from
# there). The table has no notion of subcommands yet, so they live here.

_SUBCOMMANDS: dict[bytes, dict[bytes, Spec]] = {}

_Run = Callable[[Client, Argv], Reply]


def _subcommand(
    container: str, name: str, arity: int, flags: str = ""
) -> Callable[[_Run], _Run]:
    def register(run: _Run) -> _Run:
        value = Flag.NONE
        for word in flags.split():
            value |= Flag[word.upper()]
        summary = (run.__doc__ or "").strip().split("\n")[0]
        spec = Spec(f"{container}|{name}", arity, value, run, summary, 0, 0, 0)
        _SUBCOMMANDS.setdefault(container.encode(), {})[name.encode()] = spec
        return run

    return register


def _dispatch(client: Client, argv: Argv) -> Reply:
    """Run the subcommand ``argv[1]`` of the container ``argv[0]``."""
    container = argv[0].lower()
    spec = _SUBCOMMANDS[container].get(argv[1].lower())
    if spec is None:
        return Err(
            b"ERR unknown subcommand '%s'. Try %s HELP."
            % (argv[1][:128], container.upper())
        )
    if (spec.arity > 0 and len(argv) != spec.arity) or len(argv) < -spec.arity:
        return wrong_arity(spec.name)
    result = spec.run(client, argv)
    assert not isinstance(result, Block | NoReply)  # no subcommand blocks or pushes
    return result


def _help(client: Client, argv: Argv) -> Reply:
    """Returns helpful text about the different subcommands."""
    container = argv[0].lower()
    lines = [
        Simple(
            b"%s <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
            % container.upper()
        )
    ]
    for name, spec in _SUBCOMMANDS[container].items():
        if name != b"help":
            lines += [Simple(name.upper()), Simple(b"    " + spec.summary.encode())]
    return [*lines, Simple(b"HELP"), Simple(b"    Print this help.")]


for _container in ("client", "config", "command"):
    _subcommand(_container, "help", 2, "loading")(_help)


# ----------------------------------------------------------------- CLIENT


@command("client", arity=-2, flags="loading", keys=(0, 0, 0))
def client_(client: Client, argv: Argv) -> Reply:
    """A container for client connection commands."""
    return _dispatch(client, argv)


@_subcommand("client", "id", 2, "loading")
def client_id(client: Client, argv: Argv) -> Reply:
    """Returns the unique client ID of the connection."""
    return client.id


@_subcommand("client", "getname", 2, "loading")
def client_getname(client: Client, argv: Argv) -> Reply:
    """Returns the name of the connection."""
    return client.name or None


@_subcommand("client", "setname", 3, "loading")
def client_setname(client: Client, argv: Argv) -> Reply:
    """Sets the connection name.

    Printable ASCII without spaces, so that CLIENT LIST splits on spaces;
    an empty name removes the name.
    """
    if not _printable(argv[2]):
        return _BAD_NAME
    client.name = argv[2]
    return OK


@_subcommand("client", "setinfo", 4, "loading")
def client_setinfo(client: Client, argv: Argv) -> Reply:
    """Sets information specific to the client or connection."""
    attribute, value = argv[2], argv[3]
    if attribute.lower() not in (b"lib-name", b"lib-ver"):
        return Err(b"ERR Unrecognized option '%s'" % attribute)
    if not _printable(value):
        return Err(
            b"ERR %s cannot contain spaces, newlines or special characters." % attribute
        )
    if attribute.lower() == b"lib-name":
        client.lib_name = value
    else:
        client.lib_ver = value
    return OK


_CLIENT_TYPES = (b"normal", b"master", b"replica", b"slave", b"pubsub")


@_subcommand("client", "list", -2, "loading")
def client_list(client: Client, argv: Argv) -> Reply:
    """Lists open connections.

    ``CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]``, one
    line per client in Redis's ``field=value`` format.
    """
    state = client.state
    chosen = list(state.clients.values())
    if len(argv) == 4 and argv[2].lower() == b"type":
        kind = argv[3].lower()
        if kind not in _CLIENT_TYPES:
            return Err(b"ERR Unknown client type '%s'" % argv[3])
        chosen = [
            c for c in chosen if (b"pubsub" if c.subscribed else b"normal") == kind
        ]
    elif len(argv) > 3 and argv[2].lower() == b"id":
        ids = [parse_int(arg) for arg in argv[3:]]
        if None in ids:
            return Err(b"ERR Invalid client ID")
        chosen = [state.clients[i] for i in ids if i in state.clients]
    elif len(argv) != 2:
        return SYNTAX_ERROR
    return Verbatim(b"".join(_client_line(c) + b"\n" for c in chosen))


@_subcommand("client", "info", 2, "loading")
def client_info(client: Client, argv: Argv) -> Reply:
    """Returns information about the connection."""
    return Verbatim(_client_line(client) + b"\n")


def _client_line(client: Client) -> bytes:
    # Redis's fields in Redis's order, less those only the server knows
    # (buffers, file descriptor, local address). idle is 0: the table does
    # not yet record when a client last sent a command.
    flags = b"".join(
        letter
        for letter, on in (
            (b"P", client.subscribed),
            (b"x", client.multi is not None),
            (b"d", client.dirty),
            (b"c", client.close_after_reply),
        )
        if on
    )
    fields = [
        (b"id", b"%d" % client.id),
        (b"addr", client.address.encode()),
        (b"name", client.name),
        (b"age", b"%d" % (client.state.clock() - client.created)),
        (b"idle", b"0"),
        (b"flags", flags or b"N"),
        (b"db", b"%d" % client.db_index),
        (b"sub", b"%d" % len(client.channels)),
        (b"psub", b"%d" % len(client.patterns)),
        (b"ssub", b"0"),
        (b"multi", b"%d" % (-1 if client.multi is None else len(client.multi))),
        (b"watch", b"%d" % len(client.watched)),
        (b"cmd", client.last_command or b"NULL"),
        (b"user", b"default"),
        (b"redir", b"-1"),
        (b"resp", b"3" if client.resp3 else b"2"),
        (b"lib-name", client.lib_name),
        (b"lib-ver", client.lib_ver),
    ]
    return b" ".join(b"%s=%s" % field for field in fields)


# ----------------------------------------------------------------- CONFIG


@command("config", arity=-2, flags="loading", keys=(0, 0, 0))
def config(client: Client, argv: Argv) -> Reply:
    """A container for server configuration commands."""
    return _dispatch(client, argv)


@_subcommand("config", "get", -3, "loading")
def config_get(client: Client, argv: Argv) -> Reply:
    """Returns the effective values of configuration parameters.

    A map (a flat array in RESP2) of every parameter a name or glob
    names, without case; an exact name is answered as it was spelt, as
    Redis does.
    """
    settings = client.state.config
    found: dict[bytes, tuple[bytes, bytes]] = {}
    for name in argv[2:]:
        lowered = name.lower()
        if not any(char in lowered for char in b"[*?"):
            if lowered in settings and lowered not in found:
                found[lowered] = (name, settings[lowered])
            continue
        for key, value in settings.items():
            if key not in found and glob_match(lowered, key.lower()):
                found[key] = (key, value)
    return Map(list(found.values()))


@_subcommand("config", "set", -4, "loading")
def config_set(client: Client, argv: Argv) -> Reply:
    """Sets configuration parameters in-flight.

    Refused for now: every parameter mqd reports is fixed at start.
    """
    if len(argv) % 2:
        return SYNTAX_ERROR
    names = argv[2::2]
    for name in names:
        if name.lower() not in client.state.config:
            return Err(
                b"ERR Unknown option or number of arguments for CONFIG SET - '%s'"
                % name
            )
    return Err(
        b"ERR CONFIG SET failed (possibly related to argument '%s') - "
        b"can't set immutable config" % names[0]
    )


# ---------------------------------------------------------------- COMMAND


@command("command", arity=-1, flags="loading", keys=(0, 0, 0))
def command_(client: Client, argv: Argv) -> Reply:
    """Returns detailed information about all commands."""
    if len(argv) == 1:
        return [_info(spec) for spec in COMMANDS.values()]
    return _dispatch(client, argv)


@_subcommand("command", "count", 2, "loading")
def command_count(client: Client, argv: Argv) -> Reply:
    """Returns a count of commands."""
    return len(COMMANDS)


@_subcommand("command", "info", -2, "loading")
def command_info(client: Client, argv: Argv) -> Reply:
    """Returns information about one, multiple or all commands."""
    if len(argv) == 2:
        return [_info(spec) for spec in COMMANDS.values()]
    return [_info(spec) if spec else None for spec in map(_lookup, argv[2:])]


@_subcommand("command", "docs", -2, "loading")
def command_docs(client: Client, argv: Argv) -> Reply:
    """Returns documentary information about one, multiple or all commands."""
    if len(argv) == 2:
        chosen = list(COMMANDS.values())
    else:
        chosen = [spec for spec in map(_lookup, argv[2:]) if spec is not None]
    return Map([(spec.name.encode(), _docs(spec)) for spec in chosen])


def _lookup(name: bytes) -> Spec | None:
    """A command by name, or a subcommand by ``container|name``."""
    container, _, sub = name.lower().partition(b"|")
    if sub:
        return _SUBCOMMANDS.get(container, {}).get(sub)
    return COMMANDS.get(container)


# Our flags with Redis's names, in Redis's order. PUBSUB (allowed while
# subscribed) and NOMULTI (runs at once inside MULTI) are left out: Redis
# has flags of those names that mean something else.
_FLAG_NAMES = [
    (Flag.WRITE, b"write"),
    (Flag.READONLY, b"readonly"),
    (Flag.BLOCKING, b"blocking"),
    (Flag.LOADING, b"loading"),
    (Flag.FAST, b"fast"),
    (Flag.NOAUTH, b"no_auth"),
]


def _info(spec: Spec) -> Reply:
    """One command as COMMAND describes it (Redis 7's ten fields)."""
    subcommands = _SUBCOMMANDS.get(spec.name.encode())
    return [
        spec.name.encode(),
        spec.arity,
        Set([Simple(name) for flag, name in _FLAG_NAMES if spec.flags & flag]),
        spec.first_key,
        spec.last_key,
        spec.step,
        Set([]),  # ACL categories: mqd has no ACLs
        Set([]),  # tips for clients of a cluster
        Set(_key_specs(spec)),
        [_info(sub) for sub in subcommands.values()] if subcommands else Set([]),
    ]


def _key_specs(spec: Spec) -> list[Reply]:
    """The key positions as Redis 7's one "range" key spec (no access flags:
    the table does not say how a command uses its keys)."""
    if spec.first_key <= 0:
        return []
    # Redis counts a non-negative last key from the first one.
    last = spec.last_key - spec.first_key if spec.last_key >= 0 else spec.last_key
    index = Map([(b"index", spec.first_key)])
    range_ = Map([(b"lastkey", last), (b"keystep", spec.step), (b"limit", 0)])
    key_spec: list[tuple[Reply, Reply]] = [
        (b"flags", Set([])),
        (b"begin_search", Map([(b"type", b"index"), (b"spec", index)])),
        (b"find_keys", Map([(b"type", b"range"), (b"spec", range_)])),
    ]
    return [Map(key_spec)]


# Redis's command groups (src/commands/*.json; the rest are "generic"),
# which redis-cli's "help @list" needs; Spec does not carry a group yet.
_GROUPS = {
    name.encode(): group
    for group, names in {
        b"connection": "auth client echo hello ping quit reset select",
        b"server": "bgrewriteaof bgsave command config dbsize debug flushall "
        "flushdb info lastsave save shutdown swapdb time",
        b"pubsub": "psubscribe publish pubsub punsubscribe subscribe unsubscribe",
        b"transactions": "discard exec multi unwatch watch",
        b"list": "blmove blmpop blpop brpop brpoplpush lindex linsert llen lmove "
        "lmpop lpop lpos lpush lpushx lrange lrem lset ltrim rpop rpoplpush "
        "rpush rpushx",
    }.items()
    for name in names.split()
}


def _docs(spec: Spec) -> Map:
    """One command as COMMAND DOCS describes it."""
    group = _GROUPS.get(spec.name.partition("|")[0].encode(), b"generic")
    pairs: list[tuple[Reply, Reply]] = [
        (b"summary", spec.summary.encode()),
        (b"group", group),
    ]
    subcommands = _SUBCOMMANDS.get(spec.name.encode())
    if subcommands:
        pairs.append(
            (
                b"subcommands",
                Map([(sub.name.encode(), _docs(sub)) for sub in subcommands.values()]),
            )
        )
    else:
        # We describe no arguments, but an empty list rather than none:
        # without one redis-cli's "help PING" prints "(null)" for them.
        pairs.append((b"arguments", []))
    return Map(pairs)


# ------------------------------------------------------------------- INFO


@command("info", arity=-1, flags="loading", keys=(0, 0, 0))
def info(client: Client, argv: Argv) -> Reply:
    """Returns information and statistics about the server.

    ``INFO [section ...]``: server, clients, persistence, stats,
    replication, keyspace; none, ``default``, ``all`` or ``everything``
    for all of them. An unknown section gives nothing, as in Redis.
    """
    wanted = {arg.lower() for arg in argv[1:]} or {b"default"}
    every = bool(wanted & {b"default", b"all", b"everything"})
    state = client.state
    return Verbatim(
        b"\r\n".join(
            _section(title, lines(state))
            for title, lines in _SECTIONS
            if every or title.lower() in wanted
        )
    )


def _section(title: bytes, lines: list[tuple[str, object]]) -> bytes:
    body = "".join(f"{name}:{value}\r\n" for name, value in lines)
    return b"# %s\r\n%s" % (title, body.encode())


def _server(state: State) -> list[tuple[str, object]]:
    now = state.clock()
    uptime = int(now - state.started)
    return [
        ("redis_version", REDIS_VERSION.decode()),
        ("redis_mode", "standalone"),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", struct.calcsize("P") * 8),
        ("process_id", os.getpid()),
        ("run_id", _RUN_ID.decode()),
        ("tcp_port", state.config[b"port"].decode()),
        ("server_time_usec", int(now * 1_000_000)),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
    ]


def _clients(state: State) -> list[tuple[str, object]]:
    clients = state.clients.values()
    return [
        ("connected_clients", len(clients)),
        ("maxclients", state.config.get(b"maxclients", b"0").decode()),
        ("blocked_clients", state.blocked_clients()),
        ("pubsub_clients", sum(1 for c in clients if c.subscribed)),
        ("watching_clients", sum(1 for c in clients if c.watched)),
        ("total_watched_keys", len(state.watchers)),
    ]


def _persistence(state: State) -> list[tuple[str, object]]:
    return [
        ("loading", 0),
        ("rdb_changes_since_last_save", 0),
        ("rdb_bgsave_in_progress", 0),
        ("rdb_last_save_time", int(state.started)),
        ("rdb_last_bgsave_status", "ok"),
        # As CONFIG GET appendonly says, so that the two never disagree.
        ("aof_enabled", int(state.config.get(b"appendonly") == b"yes")),
        ("aof_rewrite_in_progress", 0),
        ("aof_last_write_status", "ok"),
    ]


def _stats(state: State) -> list[tuple[str, object]]:
    return [
        ("total_connections_received", state.connections_received),
        ("total_commands_processed", state.commands_processed),
        ("pubsub_channels", len(state.channels)),
        ("pubsub_patterns", len(state.patterns)),
    ]


def _replication(state: State) -> list[tuple[str, object]]:
    return [("role", "master"), ("connected_slaves", 0)]


def _keyspace(state: State) -> list[tuple[str, object]]:
    return [
        (f"db{index}", f"keys={len(db)},expires={len(db.expires)},avg_ttl=0")
        for index, db in enumerate(state.dbs)
        if len(db) or db.expires
    ]


# In Redis's order.
_SECTIONS: list[tuple[bytes, Callable[[State], list[tuple[str, object]]]]] = [
    (b"Server", _server),
    (b"Clients", _clients),
    (b"Persistence", _persistence),
    (b"Stats", _stats),
    (b"Replication", _replication),
    (b"Keyspace", _keyspace),
]


# ---------------------------------------------------------------- helpers


def _printable(value: bytes) -> bool:
    """Printable ASCII without spaces: what Redis allows in a client's
    name and library fields, so that CLIENT LIST splits on spaces."""
    return all(0x21 <= byte <= 0x7E for byte in value)
