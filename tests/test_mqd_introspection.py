"""CONFIG, COMMAND and INFO through mqd.table.execute."""

from __future__ import annotations

import mqd.commands  # every family: COMMAND describes them all
import mqd.introspection
from mqd.replies import Err, Map, Reply, Set, Simple, encode
from mqd.table import COMMANDS, Client, Flag, Spec, State
from mqd_support import connect, pairs, run, text

assert mqd.commands


# ------------------------------------------------------------- CONFIG


def test_config_get_for_redis_benchmark() -> None:
    client = connect()
    save = run(client, b"CONFIG", b"GET", b"save")
    # redis-benchmark reads element 1 of the RESP2 array
    assert encode(save, False) == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert encode(save, True) == b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert pairs(run(client, b"CONFIG", b"GET", b"appendonly")) == {
        b"appendonly": b"no"
    }


def test_config_get_patterns_and_names() -> None:
    client = connect()
    everything = pairs(run(client, b"CONFIG", b"GET", b"*"))
    assert everything == client.state.config
    assert pairs(run(client, b"CONFIG", b"GET", b"*MAX*", b"time?ut")) == {
        b"maxclients": b"10000",
        b"timeout": b"0",
    }
    # An exact name is answered as spelt, once, without case.
    assert pairs(run(client, b"CONFIG", b"GET", b"SAVE", b"save")) == {b"SAVE": b""}
    assert pairs(run(client, b"CONFIG", b"GET", b"nothing")) == {}
    assert run(client, b"CONFIG", b"GET") == Err(
        b"ERR wrong number of arguments for 'config|get' command"
    )


def test_config_set_is_refused() -> None:
    client = connect()
    assert run(client, b"CONFIG", b"SET", b"bogus", b"1") == Err(
        b"ERR Unknown option or number of arguments for CONFIG SET - 'bogus'"
    )
    assert run(client, b"CONFIG", b"SET", b"save", b"") == Err(
        b"ERR CONFIG SET failed (possibly related to argument 'save') - "
        b"can't set immutable config"
    )
    assert run(client, b"CONFIG", b"SET", b"save", b"", b"timeout") == Err(
        b"ERR syntax error"
    )


# ------------------------------------------------------------ COMMAND


def test_command_describes_every_command() -> None:
    client = connect()
    listing = run(client, b"COMMAND")
    assert isinstance(listing, list)
    assert len(listing) == len(COMMANDS) == run(client, b"COMMAND", b"COUNT")
    by_name = {entry[0]: entry for entry in listing if isinstance(entry, list)}
    assert set(by_name) == set(COMMANDS)
    for entry in by_name.values():
        assert len(entry) == 10
        assert isinstance(entry[1], int)
        assert isinstance(entry[2], Set)
    assert by_name[b"ping"][:6] == [b"ping", -1, Set([Simple(b"fast")]), 0, 0, 0]
    assert by_name[b"auth"][2] == Set(
        [Simple(b"loading"), Simple(b"fast"), Simple(b"no_auth")]
    )
    subcommands = by_name[b"client"][9]
    assert isinstance(subcommands, list)
    heads = [sub[:2] for sub in subcommands if isinstance(sub, list)]
    assert [b"client|setname", 3] in heads
    assert by_name[b"echo"][9] == Set([])


def test_command_info_and_key_specs() -> None:
    client = connect()
    reply = run(client, b"COMMAND", b"INFO", b"echo", b"nosuch", b"CLIENT|SETNAME")
    assert isinstance(reply, list)
    assert [entry[0] if isinstance(entry, list) else entry for entry in reply] == [
        b"echo",
        None,
        b"client|setname",
    ]

    def dummy(client: Client, argv: list[bytes]) -> Reply:
        return None

    # Keys from 1 to the last but one (BLPOP's), and from 2 to 4 by 2.
    for first, last, step, lastkey in ((1, -2, 1, -2), (2, 4, 2, 2)):
        spec = Spec("x", -2, Flag.WRITE, dummy, "", first, last, step)
        info = mqd.introspection._info(spec)
        assert isinstance(info, list)
        assert info[3:6] == [first, last, step]
        assert info[8] == Set(
            [
                Map(
                    [
                        (b"flags", Set([])),
                        (
                            b"begin_search",
                            Map(
                                [
                                    (b"type", b"index"),
                                    (b"spec", Map([(b"index", first)])),
                                ]
                            ),
                        ),
                        (
                            b"find_keys",
                            Map(
                                [
                                    (b"type", b"range"),
                                    (
                                        b"spec",
                                        Map(
                                            [
                                                (b"lastkey", lastkey),
                                                (b"keystep", step),
                                                (b"limit", 0),
                                            ]
                                        ),
                                    ),
                                ]
                            ),
                        ),
                    ]
                )
            ]
        )


def test_command_docs_has_what_redis_cli_reads() -> None:
    client = connect()
    docs = pairs(run(client, b"COMMAND", b"DOCS"))
    assert set(docs) == set(COMMANDS)
    for name, doc in docs.items():
        entry = pairs(doc)
        # redis-cli reads summary and group unchecked: both must be there.
        assert isinstance(entry[b"summary"], bytes), name
        assert entry[b"summary"], name
        assert isinstance(entry[b"group"], bytes), name
    assert pairs(docs[b"subscribe"])[b"group"] == b"pubsub"
    assert pairs(docs[b"ping"]) == {
        b"summary": b"Returns the server's liveliness response.",
        b"group": b"connection",
        b"arguments": [],
    }
    setname = pairs(pairs(docs[b"client"])[b"subcommands"])[b"client|setname"]
    assert pairs(setname)[b"summary"] == b"Sets the connection name."
    some = pairs(run(client, b"COMMAND", b"DOCS", b"INFO", b"nosuch"))
    assert list(some) == [b"info"]
    assert pairs(some[b"info"])[b"group"] == b"server"
    assert encode(run(client, b"COMMAND", b"DOCS", b"echo"), False).startswith(
        b"*2\r\n"
    )


# --------------------------------------------------------------- INFO


def test_info_default_sections() -> None:
    state = State(clock=lambda: 1_000.0)
    client = connect(state)
    state.clock = lambda: 1_000.0 + 3 * 86_400 + 5
    body = text(run(client, b"INFO"))
    sections = [part.split(b"\r\n", 1)[0] for part in body.split(b"\r\n\r\n")]
    assert sections == [
        b"# Server",
        b"# Clients",
        b"# Persistence",
        b"# Stats",
        b"# Replication",
        b"# Keyspace",
    ]
    lines = dict(
        line.split(b":", 1)
        for line in body.split(b"\r\n")
        if line and not line.startswith(b"#")
    )
    assert lines[b"redis_version"] == b"7.2.0"
    assert lines[b"redis_mode"] == b"standalone"
    assert lines[b"uptime_in_seconds"] == b"%d" % (3 * 86_400 + 5)
    assert lines[b"uptime_in_days"] == b"3"
    assert lines[b"connected_clients"] == b"1"
    assert lines[b"aof_enabled"] == b"0"
    assert lines[b"total_connections_received"] == b"1"
    assert lines[b"total_commands_processed"] == b"1"
    assert lines[b"role"] == b"master"
    assert body.endswith(b"# Keyspace\r\n")  # no keys, no lines


def test_info_sections_and_keyspace() -> None:
    state = State(clock=lambda: 1_000.0)
    client = connect(state)
    state.dbs[0].create(b"a").append(b"x")
    state.dbs[0].create(b"b").append(b"x")
    state.dbs[0].expires[b"b"] = 2_000_000
    state.dbs[5].create(b"c").append(b"x")
    assert text(run(client, b"INFO", b"KEYSPACE")) == (
        b"# Keyspace\r\n"
        b"db0:keys=2,expires=1,avg_ttl=0\r\n"
        b"db5:keys=1,expires=0,avg_ttl=0\r\n"
    )
    both = text(run(client, b"info", b"clients", b"server"))
    assert both.startswith(b"# Server\r\n")
    assert b"\r\n\r\n# Clients\r\n" in both
    assert b"# Stats" not in both
    assert text(run(client, b"INFO", b"nosuch")) == b""
    assert text(run(client, b"INFO", b"everything")).startswith(b"# Server\r\n")


def test_info_reports_what_the_server_sets() -> None:
    state = State()
    client = connect(state)
    lines = text(run(client, b"INFO", b"server", b"clients")).split(b"\r\n")
    assert b"tcp_port:0" in lines  # no server: Redis's "port 0", none
    assert b"blocked_clients:0" in lines
    assert pairs(run(client, b"CONFIG", b"GET", b"port")) == {b"port": b"0"}
    state.config[b"port"] = b"6380"
    state.blocked_clients = lambda: 2
    lines = text(run(client, b"INFO", b"server", b"clients")).split(b"\r\n")
    assert b"tcp_port:6380" in lines
    assert b"blocked_clients:2" in lines


def test_info_is_verbatim_in_resp3() -> None:
    client = connect()
    reply = run(client, b"INFO", b"replication")
    assert encode(reply, True) == (
        b"=52\r\ntxt:# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n"
    )
    assert encode(reply, False).startswith(b"$48\r\n# Replication\r\n")
