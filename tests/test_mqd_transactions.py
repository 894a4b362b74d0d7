"""MULTI, EXEC, DISCARD, WATCH, UNWATCH against Redis's rules (src/multi.c,
tests/unit/multi.tcl), two clients of one State where one must change what
the other watches."""

from __future__ import annotations

from typing import Any

import pytest

# Registering DEL, EXISTS, EXPIRE, SELECT, RPUSH, BLPOP, SUBSCRIBE, PING...:
# commands to queue.
from mqd import connection, keys, lists, pubsub
from mqd.replies import NULL_ARRAY, OK, QUEUED, Err, Push, Reply, Simple, encode
from mqd.table import Block, Client, State, execute
from mqd.transactions import EXECABORT
from mqd_support import Table

assert connection  # imported to register their commands
assert keys
assert lists
assert pubsub


class World(Table):
    """Two clients of one State, a clock the test moves, a log it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.a = self.state.connect(lambda reply: None)
        self.b = self.state.connect(lambda reply: None)

    def run(self, client: Client, *args: bytes | str | int) -> Any:
        # Any: a test compares the reply with what Redis answers.
        argv = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
        return execute(client, argv)

    def items(self, key: bytes, db: int = 0) -> list[bytes]:
        value = self.state.dbs[db].get(key)
        return [] if value is None else list(value)


@pytest.fixture
def w() -> World:
    return World()


# ---------------------------------------------------------------- basics


def test_multi_queues_and_exec_runs_in_order(w: World) -> None:
    # multi.tcl "MULTI / EXEC basics".
    assert w.run(w.a, "MULTI") == OK
    assert w.run(w.a, "rpush", "q", "a", "b") == QUEUED
    assert w.run(w.a, "EXISTS", "q") == QUEUED
    assert w.run(w.a, "rpush", "q", "c") == QUEUED
    assert w.items(b"q") == []  # nothing ran yet
    assert w.run(w.a, "EXEC") == [2, 1, 3]
    assert w.items(b"q") == [b"a", b"b", b"c"]
    assert w.a.multi is None


def test_exec_of_an_empty_transaction(w: World) -> None:
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == []
    assert encode(w.run(w.a, "DBSIZE"), False) == b":0\r\n"


def test_errors_while_running_are_elements_of_the_reply(w: World) -> None:
    w.run(w.a, "MULTI")
    w.run(w.a, "RENAME", "nokey", "x")
    w.run(w.a, "EXPIRE", "q", "soon")
    w.run(w.a, "rpush", "q", "a")
    assert w.run(w.a, "EXEC") == [
        Err(b"ERR no such key"),
        Err(b"ERR value is not an integer or out of range"),
        1,
    ]


def test_discard_drops_the_queue(w: World) -> None:
    # multi.tcl "DISCARD".
    w.run(w.a, "rpush", "q", "a", "b", "c")
    w.run(w.a, "MULTI")
    assert w.run(w.a, "DEL", "q") == QUEUED
    assert w.run(w.a, "DISCARD") == OK
    assert w.items(b"q") == [b"a", b"b", b"c"]
    assert w.run(w.a, "EXISTS", "q") == 1  # no longer queued


def test_misplaced_commands(w: World) -> None:
    assert w.run(w.a, "EXEC") == Err(b"ERR EXEC without MULTI")
    assert w.run(w.a, "DISCARD") == Err(b"ERR DISCARD without MULTI")
    assert w.run(w.a, "UNWATCH") == OK  # nothing watched: fine
    w.run(w.a, "MULTI")
    # multi.tcl "Nested MULTI are not allowed", "WATCH inside MULTI is not
    # allowed": errors, but the transaction goes on.
    assert w.run(w.a, "MULTI") == Err(b"ERR MULTI calls can not be nested")
    assert w.run(w.a, "WATCH", "x") == Err(b"ERR WATCH inside MULTI is not allowed")
    w.run(w.a, "rpush", "q", "a")
    assert w.run(w.a, "EXEC") == [1]


def test_arity(w: World) -> None:
    for name in ("multi", "discard", "unwatch"):
        assert w.run(w.a, name, "x") == Err(
            b"ERR wrong number of arguments for '%s' command" % name.encode()
        )
    assert w.run(w.a, "WATCH") == Err(
        b"ERR wrong number of arguments for 'watch' command"
    )


# ---------------------------------------------------------------- EXECABORT


REFUSED_EXEC = Err(
    b"EXECABORT Transaction discarded because of: "
    b"wrong number of arguments for 'exec' command"
)


def test_a_refused_exec_discards_the_transaction(w: World) -> None:
    # Redis's rejectCommand(): an EXEC refused before it runs (wrong arity,
    # NOAUTH, RESP2 pub/sub mode) goes to execCommandAbort(), which
    # discards the transaction and its watches, in MULTI or not.
    w.run(w.a, "WATCH", "k")
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "q", "a")
    assert w.run(w.a, "EXEC", "x") == REFUSED_EXEC
    assert w.a.multi is None
    assert not w.a.watched
    assert w.run(w.a, "EXEC") == Err(b"ERR EXEC without MULTI")
    assert w.items(b"q") == []
    assert w.run(w.a, "EXEC", "x") == REFUSED_EXEC


def test_an_exec_refused_by_the_rules_aborts_with_their_reason() -> None:
    state = State(requirepass=b"pw")
    client = state.connect(lambda reply: None)
    because = b"EXECABORT Transaction discarded because of: "
    assert execute(client, [b"EXEC"]) == Err(
        because + b"NOAUTH Authentication required."
    )
    execute(client, [b"AUTH", b"pw"])
    execute(client, [b"SUBSCRIBE", b"c"])
    assert execute(client, [b"EXEC"]) == Err(
        because + b"Can't execute 'exec': only (P|S)SUBSCRIBE / "
        b"(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    )


@pytest.mark.parametrize(
    ("refused", "error"),
    [
        (
            ["NOSUCH", "x"],
            b"ERR unknown command 'NOSUCH', with args beginning with: 'x' ",
        ),
        (["rpush", "q"], b"ERR wrong number of arguments for 'rpush' command"),
        (["WATCH"], b"ERR wrong number of arguments for 'watch' command"),
    ],
)
def test_exec_after_a_refused_command_aborts(
    w: World, refused: list[str], error: bytes
) -> None:
    # multi.tcl "EXEC fails if there are errors while queueing commands #1",
    # "If EXEC aborts, the client MULTI state is cleared".
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "q", "a")
    assert w.run(w.a, *refused) == Err(error)
    assert w.run(w.a, "rpush", "q", "b") == QUEUED
    assert w.run(w.a, "EXEC") == EXECABORT
    assert (
        EXECABORT.text == b"EXECABORT Transaction discarded because of previous errors."
    )
    assert w.items(b"q") == []
    assert w.a.multi is None
    assert w.run(w.a, "DBSIZE") == 0  # runs at once again
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == []  # the abort is forgotten


def test_execabort_wins_over_a_changed_watched_key(w: World) -> None:
    w.run(w.a, "WATCH", "q")
    w.run(w.b, "rpush", "q", "x")
    w.run(w.a, "MULTI")
    w.run(w.a, "NOSUCH")
    assert w.run(w.a, "EXEC") == EXECABORT


# ---------------------------------------------------------------- WATCH


def test_exec_fails_when_another_client_changed_a_watched_key(w: World) -> None:
    w.run(w.a, "rpush", "q", "1")
    assert w.run(w.a, "WATCH", "other", "q", "more") == OK
    w.run(w.b, "rpush", "q", "2")
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "q", "3")
    reply = w.run(w.a, "EXEC")
    assert reply == NULL_ARRAY
    assert encode(reply, False) == b"*-1\r\n"
    assert encode(reply, True) == b"_\r\n"
    assert w.items(b"q") == [b"1", b"2"]


def test_exec_runs_when_watched_keys_did_not_change(w: World) -> None:
    w.run(w.a, "rpush", "q", "1")
    w.run(w.a, "WATCH", "q", "x")
    w.run(w.a, "WATCH", "y")
    w.run(w.b, "rpush", "other", "2")
    w.run(w.b, "EXISTS", "q")  # reading is no change
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "q", "3")
    assert w.run(w.a, "EXEC") == [2]


def test_a_client_own_change_counts_too(w: World) -> None:
    # multi.tcl "EXEC fail on WATCHed key modified (1 key of 1 watched)".
    w.run(w.a, "WATCH", "q")
    w.run(w.a, "rpush", "q", "1")
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == NULL_ARRAY


def test_watch_remembers_the_database(w: World) -> None:
    # multi.tcl "WATCH is able to remember the DB a key belongs to".
    w.run(w.a, "SELECT", 5)
    w.run(w.a, "WATCH", "x")
    w.run(w.b, "SELECT", 1)
    w.run(w.b, "rpush", "x", "10")
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == []
    w.run(w.a, "WATCH", "x")
    w.run(w.b, "SELECT", 5)
    w.run(w.b, "rpush", "x", "10")
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == NULL_ARRAY


def test_after_exec_keys_are_no_longer_watched(w: World) -> None:
    # multi.tcl "After successful EXEC ..." and "After failed EXEC key is
    # no longer watched".
    for change_first in (False, True):
        w.run(w.a, "WATCH", "x")
        if change_first:
            w.run(w.b, "rpush", "x", "1")
        w.run(w.a, "MULTI")
        w.run(w.a, "EXEC")
        w.run(w.b, "rpush", "x", "2")
        w.run(w.a, "MULTI")
        w.run(w.a, "DBSIZE")
        assert w.run(w.a, "EXEC") == [1]
    assert w.state.watchers == {}


def test_unwatch_forgets_keys_and_that_one_changed(w: World) -> None:
    # multi.tcl "It is possible to UNWATCH".
    w.run(w.a, "WATCH", "x")
    w.run(w.b, "rpush", "x", "1")
    assert w.run(w.a, "UNWATCH") == OK
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == []
    assert w.state.watchers == {}


def test_unwatch_inside_multi_is_queued(w: World) -> None:
    w.run(w.a, "WATCH", "x")
    w.run(w.a, "MULTI")
    assert w.run(w.a, "UNWATCH") == QUEUED
    w.run(w.b, "rpush", "x", "1")  # too late to unwatch: EXEC fails
    assert w.run(w.a, "EXEC") == NULL_ARRAY


def test_discard_unwatches_and_clears_the_change(w: World) -> None:
    # multi.tcl "DISCARD should clear the WATCH dirty flag on the client",
    # "DISCARD should UNWATCH all the keys".
    w.run(w.a, "WATCH", "x")
    w.run(w.b, "rpush", "x", "1")
    w.run(w.a, "MULTI")
    w.run(w.a, "DISCARD")
    w.run(w.b, "rpush", "x", "2")
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "x", "3")
    assert w.run(w.a, "EXEC") == [3]


def test_flush_and_swapdb_make_exec_fail(w: World) -> None:
    # multi.tcl "FLUSHALL is able to touch the watched keys", "SWAPDB is
    # able to touch the watched keys that exist".
    for change in (["FLUSHALL"], ["FLUSHDB"], ["SWAPDB", 0, 1]):
        w.run(w.b, "rpush", "x", "1")
        w.run(w.a, "WATCH", "x")
        w.run(w.b, *change)
        w.run(w.a, "MULTI")
        assert w.run(w.a, "EXEC") == NULL_ARRAY, change
        w.run(w.b, "FLUSHALL")


def test_flush_does_not_touch_keys_that_did_not_exist(w: World) -> None:
    # multi.tcl "FLUSHALL does not touch non affected keys".
    w.run(w.a, "WATCH", "x")
    w.run(w.b, "FLUSHALL")
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == []


# ---------------------------------------------------------------- expiry


def test_a_watched_key_that_expires_before_exec_has_changed(w: World) -> None:
    # multi.tcl "EXEC fail on lazy expired WATCHed key", "WATCH will
    # consider touched expired keys".
    w.run(w.a, "rpush", "q", "1")
    w.run(w.a, "PEXPIRE", "q", 100)
    w.run(w.a, "WATCH", "q")
    w.now += 0.1
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "q", "2")
    assert w.run(w.a, "EXEC") == NULL_ARRAY
    assert w.items(b"q") == []


def test_a_watched_key_expired_and_deleted_before_exec_has_changed(w: World) -> None:
    w.run(w.a, "rpush", "q", "1")
    w.run(w.a, "PEXPIRE", "q", 100)
    w.run(w.a, "WATCH", "q")
    w.now += 0.1
    assert w.run(w.b, "EXISTS", "q") == 0  # deletes it, telling no one
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == NULL_ARRAY


def test_a_watched_key_with_time_left_at_exec_has_not_changed(w: World) -> None:
    w.run(w.a, "rpush", "q", "1")
    w.run(w.a, "PEXPIRE", "q", 100)
    w.run(w.a, "WATCH", "q")
    w.now += 0.099
    w.run(w.a, "MULTI")
    w.run(w.a, "PERSIST", "q")
    assert w.run(w.a, "EXEC") == [1]
    w.now += 1
    w.run(w.a, "WATCH", "q")  # the old deadline is forgotten
    w.run(w.a, "MULTI")
    assert w.run(w.a, "EXEC") == []


@pytest.mark.parametrize("between", [None, ["EXISTS", "q"], ["FLUSHDB"]])
def test_watching_an_expired_key_is_watching_a_missing_one(
    w: World, between: list[str] | None
) -> None:
    # multi.tcl "WATCH stale keys should not fail EXEC", "Delete WATCHed
    # stale keys should not fail EXEC", "FLUSHDB while watching stale keys
    # should not fail EXEC".
    w.run(w.a, "rpush", "q", "1")
    w.run(w.a, "PEXPIRE", "q", 1)
    w.now += 0.002
    w.run(w.a, "WATCH", "q")
    if between is not None:
        w.run(w.b, *between)
    w.run(w.a, "MULTI")
    w.run(w.a, "DBSIZE")
    assert w.run(w.a, "EXEC") == [0]


# ---------------------------------------------------------------- blocking


def test_a_blocking_command_inside_multi_times_out_at_once(w: World) -> None:
    # multi.tcl "Blocking commands ignores the timeout".
    w.run(w.a, "MULTI")
    assert w.run(w.a, "blpop", "q", 0) == QUEUED
    w.run(w.a, "rpush", "q", "a")
    assert w.run(w.a, "blpop", "q", 0) == QUEUED
    assert w.run(w.a, "EXEC") == [NULL_ARRAY, 1, [b"q", b"a"]]


def test_blocking_moves_inside_multi_answer_the_null_bulk_string(w: World) -> None:
    # Redis: BLMOVE and BRPOPLPUSH give $-1 inside MULTI, BLPOP *-1.
    w.run(w.a, "MULTI")
    w.run(w.a, "blmove", "q", "p", "LEFT", "LEFT", 0)
    w.run(w.a, "brpoplpush", "q", "p", 0)
    w.run(w.a, "blpop", "q", 0)
    assert encode(w.run(w.a, "EXEC"), False) == b"*3\r\n$-1\r\n$-1\r\n*-1\r\n"


def test_outside_multi_the_stand_in_blocks(w: World) -> None:
    assert isinstance(w.run(w.a, "blpop", "q", 0), Block)


# ---------------------------------------------------------------- pub/sub


def test_queued_unsubscribes_reply_inside_exec(w: World) -> None:
    # pubsub.tcl "unsubscribe inside multi, and publish to self": each
    # (un)subscribe message is an element of EXEC's array, in order.
    out: list[Reply] = []
    client = w.state.connect(out.append)
    w.run(client, "HELLO", 3)
    w.run(client, "SUBSCRIBE", "foo", "bar", "baz")
    out.clear()
    w.run(client, "MULTI")
    for queued in (["PING", "abc"], ["UNSUBSCRIBE", "bar"], ["UNSUBSCRIBE", "baz"]):
        assert w.run(client, *queued) == QUEUED
    w.run(client, "PING", "def")
    assert w.run(client, "EXEC") == [
        b"abc",
        Push([b"unsubscribe", b"bar", 2]),
        Push([b"unsubscribe", b"baz", 1]),
        b"def",
    ]
    assert out == []  # nothing went out of band
    assert client.channels == {b"foo"}


def test_a_queued_subscribe_in_resp2_is_an_array_in_exec_array(w: World) -> None:
    out: list[Reply] = []
    client = w.state.connect(out.append)
    w.run(client, "MULTI")
    w.run(client, "SUBSCRIBE", "news")
    reply = w.run(client, "EXEC")
    assert (
        encode(reply, False) == b"*1\r\n*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    )
    assert encode(reply, True) == b"*1\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    assert out == []
    assert w.state.channels == {b"news": {client}}
    # Subscribed now: in RESP2 only the pub/sub commands run.
    assert w.run(client, "PING") == [b"pong", b""]


def test_a_queued_subscribe_to_several_channels_gives_one_element_each(
    w: World,
) -> None:
    # Redis writes these elements too but counts one (redis/redis#12207);
    # the array here says how many there are.
    out: list[Reply] = []
    client = w.state.connect(out.append)
    w.run(client, "MULTI")
    w.run(client, "PSUBSCRIBE", "a*", "b*")
    w.run(client, "ECHO", "x")
    assert w.run(client, "EXEC") == [
        Push([b"psubscribe", b"a*", 1]),
        Push([b"psubscribe", b"b*", 2]),
        b"x",
    ]
    assert out == []


def test_publish_to_itself_inside_exec_still_goes_out_of_band(w: World) -> None:
    # pubsub.tcl "publish to self inside multi": the count is PUBLISH's
    # reply, the message is pushed (Redis writes it after EXEC's reply;
    # here it is delivered while EXEC runs).
    out: list[Reply] = []
    client = w.state.connect(out.append)
    w.run(client, "HELLO", 3)
    w.run(client, "SUBSCRIBE", "foo")
    out.clear()
    w.run(client, "MULTI")
    w.run(client, "PUBLISH", "foo", "bar")
    w.run(client, "PING")
    assert w.run(client, "EXEC") == [1, Simple(b"PONG")]
    assert out == [Push([b"message", b"foo", b"bar"])]


# ---------------------------------------------------------------- the log


def test_one_write_is_logged_alone(w: World) -> None:
    # multi.tcl "MULTI / EXEC is not propagated (single write command)".
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "q", "a")
    w.run(w.a, "EXISTS", "q")
    w.run(w.a, "EXEC")
    assert w.logged == [(0, [b"rpush", b"q", b"a"])]


def test_writes_are_logged_inside_multi_exec(w: World) -> None:
    # multi.tcl "MULTI / EXEC is propagated correctly (multiple commands
    # with SELECT)": each write keeps its database.
    w.run(w.a, "MULTI")
    w.run(w.a, "SELECT", 1)
    w.run(w.a, "rpush", "q", "a")
    w.run(w.a, "EXISTS", "q")
    w.run(w.a, "SELECT", 2)
    w.run(w.a, "rpush", "r", "b")
    w.run(w.a, "EXPIRE", "r", 10)
    w.run(w.a, "EXEC")
    assert w.logged == [
        (1, [b"MULTI"]),
        (1, [b"rpush", b"q", b"a"]),
        (2, [b"rpush", b"r", b"b"]),
        (2, [b"PEXPIREAT", b"r", b"1010000"]),
        (2, [b"EXEC"]),
    ]
    assert w.a.db_index == 2
    w.run(w.a, "DEL", "r")
    assert w.logged[-1] == (2, [b"DEL", b"r"])  # the log is ours again


@pytest.mark.parametrize(
    "body",
    [
        [],  # "MULTI / EXEC is propagated correctly (empty transaction)"
        [["EXISTS", "q"]],  # "... (read-only commands)"
        [["DEL", "q"], ["PERSIST", "q"]],  # "... (write command, no effect)"
    ],
)
def test_a_transaction_that_wrote_nothing_logs_nothing(
    w: World, body: list[list[str]]
) -> None:
    w.run(w.a, "MULTI")
    for argv in body:
        w.run(w.a, *argv)
    w.run(w.a, "EXEC")
    assert w.logged == []


def test_a_refused_transaction_logs_nothing(w: World) -> None:
    w.run(w.a, "WATCH", "q")
    w.run(w.b, "rpush", "q", "a")
    w.logged.clear()
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "q", "b")
    w.run(w.a, "rpush", "q", "c")
    w.run(w.a, "EXEC")
    assert w.logged == []


def test_without_a_log(w: World) -> None:
    w.state.log = None
    w.run(w.a, "MULTI")
    w.run(w.a, "rpush", "q", "a")
    w.run(w.a, "rpush", "q", "b")
    assert w.run(w.a, "EXEC") == [1, 2]
    assert w.state.log is None
