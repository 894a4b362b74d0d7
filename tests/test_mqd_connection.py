"""Connection commands (PING, ECHO, QUIT, RESET, AUTH, HELLO, CLIENT)
through mqd.table.execute."""

from __future__ import annotations

import hmac

import mqd.connection
import mqd.pubsub
import pytest
from mqd.connection import REDIS_VERSION
from mqd.replies import OK, Err, Simple, encode
from mqd.table import (
    COMMANDS,
    NO_REPLY,
    NOAUTH,
    Client,
    Flag,
    State,
    execute,
)
from mqd_support import connect, pairs, run, text

assert mqd.pubsub  # imported for its commands

WRONGPASS = Err(b"WRONGPASS invalid username-password pair or user is disabled.")


def run_pushed(client: Client, *argv: bytes) -> None:
    """Run a command whose replies are all pushed ((UN)SUBSCRIBE)."""
    assert execute(client, list(argv)) is NO_REPLY


# ------------------------------------------------------------ PING, ECHO


def test_ping_and_echo() -> None:
    client = connect()
    assert run(client, b"PING") == Simple(b"PONG")
    assert run(client, b"ping", b"hi") == b"hi"
    assert run(client, b"PING", b"a", b"b") == Err(
        b"ERR wrong number of arguments for 'ping' command"
    )
    assert run(client, b"ECHO", b"x y") == b"x y"
    assert run(client, b"ECHO") == Err(
        b"ERR wrong number of arguments for 'echo' command"
    )


def test_ping_in_pub_sub_mode() -> None:
    client = connect()
    run_pushed(client, b"SUBSCRIBE", b"c")
    # RESP2: an array, which a subscriber can tell from its messages
    assert run(client, b"PING") == [b"pong", b""]
    assert run(client, b"PING", b"hey") == [b"pong", b"hey"]
    assert encode([b"pong", b""], False) == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    client.resp3 = True
    assert run(client, b"PING") == Simple(b"PONG")
    client.resp3 = False
    run_pushed(client, b"UNSUBSCRIBE")
    assert run(client, b"PING") == Simple(b"PONG")


def test_quit_replies_ok_then_closes() -> None:
    client = connect(State(requirepass=b"secret"))  # allowed before AUTH
    assert run(client, b"QUIT") == OK
    assert client.close_after_reply


# --------------------------------------------------------------- AUTH


def test_auth_without_a_password_configured() -> None:
    client = connect()
    assert run(client, b"AUTH", b"x") == Err(
        b"ERR AUTH <password> called without any password configured for the "
        b"default user. Are you sure your configuration is correct?"
    )
    # Redis's default user is "nopass": it takes any password...
    assert run(client, b"AUTH", b"default", b"anything") == OK
    # ...and there is no other user.
    assert run(client, b"AUTH", b"someone", b"anything") == WRONGPASS
    assert run(client, b"AUTH", b"a", b"b", b"c") == Err(b"ERR syntax error")


def test_auth_with_a_password() -> None:
    client = connect(State(requirepass=b"secret"))
    assert not client.authenticated
    assert run(client, b"AUTH", b"wrong") == WRONGPASS
    assert run(client, b"AUTH", b"secre") == WRONGPASS
    assert run(client, b"AUTH", b"Default", b"secret") == WRONGPASS
    assert not client.authenticated
    assert run(client, b"AUTH", b"secret") == OK
    assert client.authenticated
    assert run(client, b"AUTH", b"wrong") == WRONGPASS
    assert client.authenticated  # a failed AUTH takes nothing away
    other = connect(client.state)
    assert run(other, b"AUTH", b"default", b"secret") == OK


def test_passwords_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    client = connect(State(requirepass=b"secret"))
    run(client, b"AUTH", b"short")
    run(client, b"HELLO", b"3", b"AUTH", b"default", b"a much longer guess")
    run(client, b"AUTH", b"secret")
    assert len(calls) == 3
    # Digests: every comparison is of equal lengths, whatever was typed.
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}


def test_noauth_for_every_command_but_the_handshake() -> None:
    state = State(requirepass=b"secret")
    client = connect(state)
    # Redis's no_auth commands: AUTH, HELLO, QUIT, and RESET too.
    allowed = {b"auth", b"hello", b"quit", b"reset"}
    assert {name for name, spec in COMMANDS.items() if spec.flags & Flag.NOAUTH} == (
        allowed
    )
    for name, spec in COMMANDS.items():
        argv = [name.upper()] + [b"x"] * (abs(spec.arity) - 1)
        # EXEC: Redis wraps the refusal in EXECABORT (test_mqd_transactions).
        if name not in allowed and name != b"exec":
            assert run(client, *argv) == NOAUTH, name
    assert encode(NOAUTH, False) == b"-NOAUTH Authentication required.\r\n"
    assert run(client, b"RESET") == Simple(b"RESET")
    assert not client.authenticated
    assert run(client, b"AUTH", b"secret") == OK
    assert run(client, b"PING") == Simple(b"PONG")


# -------------------------------------------------------------- HELLO


def test_hello_3_switches_to_resp3_and_describes_the_server() -> None:
    client = connect()
    reply = run(client, b"HELLO", b"3")
    assert client.resp3
    assert pairs(reply) == {
        b"server": b"redis",
        b"version": REDIS_VERSION,
        b"proto": 3,
        b"id": client.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }
    assert encode(reply, True).startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    assert REDIS_VERSION == b"7.2.0"


def test_hello_2_and_hello_alone() -> None:
    client = connect()
    client.resp3 = True
    reply = run(client, b"hello", b"2")
    assert not client.resp3
    assert encode(reply, False).startswith(b"*14\r\n$6\r\nserver\r\n")
    assert pairs(run(client, b"HELLO"))[b"proto"] == 2  # no change
    client.resp3 = True
    assert pairs(run(client, b"HELLO"))[b"proto"] == 3


def test_hello_errors() -> None:
    client = connect()
    for version in (b"1", b"4", b"-3"):
        assert run(client, b"HELLO", version) == Err(
            b"NOPROTO unsupported protocol version"
        )
    for version in (b"three", b"03", b"+3", b" 3", b"3.0", b"99999999999999999999"):
        assert run(client, b"HELLO", version) == Err(
            b"ERR Protocol version is not an integer or out of range"
        )
    assert run(client, b"HELLO", b"3", b"AUTH", b"default") == Err(
        b"ERR Syntax error in HELLO option 'AUTH'"
    )
    assert run(client, b"HELLO", b"3", b"bogus") == Err(
        b"ERR Syntax error in HELLO option 'bogus'"
    )
    assert run(client, b"HELLO", b"3", b"SETNAME", b"a b") == Err(
        b"ERR Client names cannot contain spaces, newlines or special characters."
    )
    assert not client.resp3  # nothing changed
    assert client.name == b""


def test_hello_authenticates_before_anything_else() -> None:
    client = connect(State(requirepass=b"secret"))
    argv = [b"HELLO", b"3", b"AUTH", b"default", b"wrong", b"SETNAME", b"me"]
    assert run(client, *argv) == WRONGPASS
    assert (client.resp3, client.name, client.authenticated) == (False, b"", False)
    assert run(client, b"HELLO", b"3", b"SETNAME", b"me") == Err(
        b"NOAUTH HELLO must be called with the client already authenticated, "
        b"otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
        b"authenticate the client and select the RESP protocol version at the "
        b"same time"
    )
    assert (client.resp3, client.name) == (False, b"")
    argv[4] = b"secret"
    assert pairs(run(client, *argv))[b"proto"] == 3
    assert (client.resp3, client.name, client.authenticated) == (True, b"me", True)


# -------------------------------------------------------------- RESET


def begin_multi(client: Client) -> None:
    # As MULTI and a refused command leave it.
    client.multi = [[b"PING"]]
    client.multi_failed = True


def test_reset_makes_the_connection_new() -> None:
    state = State(requirepass=b"secret")
    client = connect(state)
    run(client, b"HELLO", b"3", b"AUTH", b"default", b"secret", b"SETNAME", b"me")
    run(client, b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py")
    run_pushed(client, b"SUBSCRIBE", b"c")
    run_pushed(client, b"PSUBSCRIBE", b"c*")
    client.db_index = 3
    state.watchers[(3, b"k")] = {client}  # as WATCH leaves them
    client.watched.add((3, b"k"))
    client.dirty = True
    begin_multi(client)  # RESET runs at once inside MULTI

    reply = run(client, b"RESET")
    assert reply == Simple(b"RESET")
    assert encode(reply, True) == b"+RESET\r\n"
    assert client.db_index == 0
    assert not client.resp3
    assert not client.authenticated
    assert (client.multi, client.multi_failed) == (None, False)
    assert (client.watched, client.dirty, state.watchers) == (set(), False, {})
    assert (client.channels, client.patterns) == (set(), set())
    assert (state.channels, state.patterns) == ({}, {})
    assert client.name == b""
    assert client.lib_name == b"redis-py"  # still the same library


def test_reset_keeps_authentication_without_a_password() -> None:
    client = connect()
    assert run(client, b"RESET") == Simple(b"RESET")
    assert client.authenticated


def test_reset_and_quit_are_allowed_in_resp2_subscribed_mode() -> None:
    client = connect()
    run_pushed(client, b"SUBSCRIBE", b"c")
    assert run(client, b"RESET") == Simple(b"RESET")
    assert run(client, b"ECHO", b"free") == b"free"


# ------------------------------------------------------------- CLIENT


def test_client_id_and_names() -> None:
    client = connect()
    assert run(client, b"CLIENT", b"ID") == client.id
    assert run(client, b"CLIENT", b"GETNAME") is None
    assert run(client, b"client", b"setname", b"worker-1") == OK
    assert run(client, b"CLIENT", b"GETNAME") == b"worker-1"
    for bad in (b"a b", b"a\nb", b"caf\xc3\xa9", b"\x00"):
        assert run(client, b"CLIENT", b"SETNAME", bad) == Err(
            b"ERR Client names cannot contain spaces, newlines or special characters."
        )
    assert run(client, b"CLIENT", b"SETNAME", b"") == OK  # removes the name
    assert run(client, b"CLIENT", b"GETNAME") is None


def test_client_setinfo() -> None:
    client = connect()
    assert run(client, b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py") == OK
    assert run(client, b"CLIENT", b"SETINFO", b"lib-ver", b"8.0.0") == OK
    assert (client.lib_name, client.lib_ver) == (b"redis-py", b"8.0.0")
    assert run(client, b"CLIENT", b"SETINFO", b"color", b"red") == Err(
        b"ERR Unrecognized option 'color'"
    )
    assert run(client, b"CLIENT", b"SETINFO", b"Lib-Name", b"a b") == Err(
        b"ERR Lib-Name cannot contain spaces, newlines or special characters."
    )


def fields(line: bytes) -> dict[bytes, bytes]:
    return dict(field.split(b"=", 1) for field in line.split(b" "))


def test_client_list() -> None:
    state = State(clock=lambda: 1_000.0)
    first, second = connect(state), connect(state)
    run(first, b"CLIENT", b"SETNAME", b"one")
    second.resp3 = True  # so that it may ask CLIENT INFO while subscribed
    run_pushed(second, b"SUBSCRIBE", b"a", b"b")
    run_pushed(second, b"PSUBSCRIBE", b"p*")
    state.clock = lambda: 1_042.0
    listing = text(run(first, b"CLIENT", b"LIST"))
    assert listing.endswith(b"\n")
    lines = [fields(line) for line in listing.splitlines()]
    assert [line[b"id"] for line in lines] == [b"%d" % first.id, b"%d" % second.id]
    mine = lines[0]
    assert mine[b"addr"] == b"127.0.0.1:5000"
    assert mine[b"name"] == b"one"
    assert mine[b"age"] == b"42"
    assert mine[b"flags"] == b"N"
    assert (mine[b"db"], mine[b"multi"], mine[b"resp"]) == (b"0", b"-1", b"2")
    assert mine[b"cmd"] == b"client"
    assert mine[b"lib-name"] == b""
    theirs = lines[1]
    assert (theirs[b"flags"], theirs[b"sub"], theirs[b"psub"]) == (b"P", b"2", b"1")
    assert theirs[b"resp"] == b"3"

    pubsub = text(run(first, b"CLIENT", b"LIST", b"TYPE", b"pubsub"))
    assert [fields(line)[b"id"] for line in pubsub.splitlines()] == [b"%d" % second.id]
    assert text(run(first, b"CLIENT", b"LIST", b"TYPE", b"master")) == b""
    by_id = text(run(first, b"CLIENT", b"LIST", b"ID", b"%d" % second.id, b"999"))
    assert [fields(line)[b"id"] for line in by_id.splitlines()] == [b"%d" % second.id]
    assert run(first, b"CLIENT", b"LIST", b"ID", b"x") == Err(b"ERR Invalid client ID")
    assert run(first, b"CLIENT", b"LIST", b"TYPE", b"odd") == Err(
        b"ERR Unknown client type 'odd'"
    )
    assert run(first, b"CLIENT", b"LIST", b"junk") == Err(b"ERR syntax error")
    assert fields(text(run(second, b"CLIENT", b"INFO")).rstrip(b"\n"))[b"id"] == (
        b"%d" % second.id
    )


def test_client_subcommand_errors_and_help() -> None:
    client = connect()
    assert run(client, b"CLIENT", b"nope") == Err(
        b"ERR unknown subcommand 'nope'. Try CLIENT HELP."
    )
    assert run(client, b"CLIENT", b"SETNAME") == Err(
        b"ERR wrong number of arguments for 'client|setname' command"
    )
    assert run(client, b"CLIENT") == Err(
        b"ERR wrong number of arguments for 'client' command"
    )
    help_ = run(client, b"CLIENT", b"HELP")
    assert isinstance(help_, list)
    assert help_[0] == Simple(
        b"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    )
    assert Simple(b"SETNAME") in help_
    assert Simple(b"    Sets the connection name.") in help_
    assert help_[-2:] == [Simple(b"HELP"), Simple(b"    Print this help.")]
