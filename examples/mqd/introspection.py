"""Commands that describe the server: CONFIG, COMMAND, INFO.

redis-cli, redis-py and redis-benchmark ask them when they connect
(CONFIG GET save and appendonly, COMMAND DOCS, INFO SERVER), so their
replies follow Redis's shapes closely; error texts are Redis's own.
COMMAND answers from the command table (:data:`mqd.table.COMMANDS` and
:data:`mqd.subcommands.SUBCOMMANDS`), INFO from :class:`mqd.table.State`.
"""

from __future__ import annotations

import os
import platform
import secrets
import struct
from collections.abc import Callable

from mqd.args import SYNTAX_ERROR, glob_match
from mqd.connection import REDIS_VERSION
from mqd.replies import Err, Map, Reply, Set, Simple, Verbatim
from mqd.subcommands import SUBCOMMANDS, dispatch, register_container, subcommand
from mqd.table import COMMANDS, Argv, Client, Flag, Spec, State, command

__all__: list[str] = []  # nothing to import: the commands register themselves

# Redis's run_id: random, one per server process (one State per process).
_RUN_ID = secrets.token_hex(20).encode()


# ----------------------------------------------------------------- CONFIG


@command("config", arity=-2, flags="loading", keys=(0, 0, 0))
def config(client: Client, argv: Argv) -> Reply:
    """A container for server configuration commands."""
    return dispatch(client, argv)


register_container("config")


@subcommand("config", "get", -3, "loading")
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


@subcommand("config", "set", -4, "loading")
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
    return dispatch(client, argv)


register_container("command")


@subcommand("command", "count", 2, "loading")
def command_count(client: Client, argv: Argv) -> Reply:
    """Returns a count of commands."""
    return len(COMMANDS)


@subcommand("command", "info", -2, "loading")
def command_info(client: Client, argv: Argv) -> Reply:
    """Returns information about one, multiple or all commands."""
    if len(argv) == 2:
        return [_info(spec) for spec in COMMANDS.values()]
    return [_info(spec) if spec else None for spec in map(_lookup, argv[2:])]


@subcommand("command", "docs", -2, "loading")
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
        return SUBCOMMANDS.get(container, {}).get(sub)
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
    subcommands = SUBCOMMANDS.get(spec.name.encode())
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
    subcommands = SUBCOMMANDS.get(spec.name.encode())
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
