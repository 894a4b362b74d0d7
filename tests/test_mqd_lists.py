"""The list commands, sans-IO, against what Redis's docs and source say.

Each test drives ``mqd.table.execute`` as the server would; the append-only
log is a list the test reads, the clock a value the test moves.
"""

from __future__ import annotations

import mqd.lists  # noqa: F401  (registers the commands)
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mqd.replies import NULL_ARRAY, OK, Err, Reply, encode
from mqd.table import (
    COMMANDS,
    Block,
    Client,
    Flag,
    NoReply,
    execute,
    run_queued,
)
from mqd_support import Table

NOT_INTEGER = Err(b"ERR value is not an integer or out of range")
MUST_BE_POSITIVE = Err(b"ERR value is out of range, must be positive")
SYNTAX = Err(b"ERR syntax error")
NOT_A_FLOAT = Err(b"ERR timeout is not a float or out of range")
NEGATIVE = Err(b"ERR timeout is negative")
OUT_OF_RANGE = Err(b"ERR timeout is out of range")
LONG_MIN = b"-9223372036854775808"


class World(Table):
    """A state with a clock the test moves, a client, and the log."""

    def __init__(self) -> None:
        super().__init__()
        self.client = self.connect()

    def run(self, *words: str, client: Client | None = None) -> Reply | Block:
        argv = [word.encode() for word in words]
        reply = execute(client or self.client, argv)
        assert not isinstance(reply, NoReply)  # no list command pushes
        return reply

    def __call__(self, *words: str) -> Reply:
        reply = self.run(*words)
        assert not isinstance(reply, Block)
        return reply

    def block(self, *words: str, client: Client | None = None) -> Block:
        reply = self.run(*words, client=client)
        assert isinstance(reply, Block), reply
        return reply

    def items(self, key: str) -> list[bytes]:
        value = self.state.dbs[0].lists.get(key.encode())
        return [] if value is None else list(value)

    def log(self) -> list[list[str]]:
        """What was logged since last asked, as text."""
        entries = [[arg.decode() for arg in argv] for _, argv in self.logged]
        self.logged.clear()
        return entries


@pytest.fixture
def r() -> World:
    return World()


def b(*words: str) -> list[Reply]:
    return [word.encode() for word in words]


# ------------------------------------------------------------ the table

SPECS = {
    # name: (arity, flags, first key, last key, step), as Redis's COMMAND says
    "lpush": (-3, "write fast", 1, 1, 1),
    "rpush": (-3, "write fast", 1, 1, 1),
    "lpushx": (-3, "write fast", 1, 1, 1),
    "rpushx": (-3, "write fast", 1, 1, 1),
    "lpop": (-2, "write fast", 1, 1, 1),
    "rpop": (-2, "write fast", 1, 1, 1),
    "llen": (2, "readonly fast", 1, 1, 1),
    "lrange": (4, "readonly", 1, 1, 1),
    "lindex": (3, "readonly", 1, 1, 1),
    "lset": (4, "write", 1, 1, 1),
    "linsert": (5, "write", 1, 1, 1),
    "lrem": (4, "write", 1, 1, 1),
    "ltrim": (4, "write", 1, 1, 1),
    "lpos": (-3, "readonly", 1, 1, 1),
    "lmove": (5, "write", 1, 2, 1),
    "rpoplpush": (3, "write", 1, 2, 1),
    "lmpop": (-4, "write", 0, 0, 0),
    "blpop": (-3, "write blocking", 1, -2, 1),
    "brpop": (-3, "write blocking", 1, -2, 1),
    "blmove": (6, "write blocking", 1, 2, 1),
    "brpoplpush": (4, "write blocking", 1, 2, 1),
    "blmpop": (-5, "write blocking", 0, 0, 0),
}


@pytest.mark.parametrize("name", SPECS)
def test_registered_as_redis_has_it(name: str) -> None:
    arity, flags, first, last, step = SPECS[name]
    spec = COMMANDS[name.encode()]
    expected = Flag.NONE
    for word in flags.split():
        expected |= Flag[word.upper()]
    assert (spec.arity, spec.flags) == (arity, expected)
    assert (spec.first_key, spec.last_key, spec.step) == (first, last, step)
    assert spec.summary


@pytest.mark.parametrize("argv", [["LPUSH", "k"], ["LPOP"], ["LRANGE", "k", "0"]])
def test_wrong_arity_is_refused_before_running(r: World, argv: list[str]) -> None:
    name = argv[0].lower()
    assert r(*argv) == Err(
        b"ERR wrong number of arguments for '%s' command" % name.encode()
    )
    assert r.log() == []


# ------------------------------------------------------------ pushes


def test_lpush_prepends_each_in_turn_and_logs_as_given(r: World) -> None:
    assert r("LPUSH", "q", "a", "b", "c") == 3
    assert r("LPUSH", "q", "d") == 4
    assert r.items("q") == b("d", "c", "b", "a")
    assert r.log() == [["LPUSH", "q", "a", "b", "c"], ["LPUSH", "q", "d"]]


def test_rpush_appends(r: World) -> None:
    assert r("RPUSH", "q", "a", "b") == 2
    assert r("RPUSH", "q", "c") == 3
    assert r.items("q") == b("a", "b", "c")
    assert r.log() == [["RPUSH", "q", "a", "b"], ["RPUSH", "q", "c"]]


def test_pushes_mark_the_key_ready_for_blocked_clients(r: World) -> None:
    r("RPUSH", "q", "a")
    assert r.state.ready == set()  # nobody waits for q: nothing to do
    r.state.waiting[(0, b"q")] = "a client blocked on q"
    r("RPUSH", "q", "a")
    assert r.state.ready == {(0, b"q")}


def test_pushx_pushes_only_onto_an_existing_list(r: World) -> None:
    assert r("LPUSHX", "q", "a") == 0
    assert r("RPUSHX", "q", "a", "b") == 0
    assert b"q" not in r.state.dbs[0].lists
    assert r.log() == []
    r("RPUSH", "q", "m")
    r.log()
    assert r("RPUSHX", "q", "x", "y") == 3
    assert r("LPUSHX", "q", "b", "a") == 5
    assert r.items("q") == b("a", "b", "m", "x", "y")
    assert r.log() == [["RPUSHX", "q", "x", "y"], ["LPUSHX", "q", "b", "a"]]


# ------------------------------------------------------------ LINSERT


def test_linsert_before_and_after_the_first_match(r: World) -> None:
    r("RPUSH", "l", "a", "c", "c")
    r.log()
    assert r("LINSERT", "l", "before", "c", "b") == 4
    assert r("LINSERT", "l", "AFTER", "c", "d") == 5
    assert r.items("l") == b("a", "b", "c", "d", "c")
    assert r.log() == [
        ["LINSERT", "l", "before", "c", "b"],
        ["LINSERT", "l", "AFTER", "c", "d"],
    ]


def test_linsert_without_pivot_or_list(r: World) -> None:
    assert r("LINSERT", "l", "BEFORE", "x", "y") == 0
    r("RPUSH", "l", "a")
    r.log()
    assert r("LINSERT", "l", "BEFORE", "x", "y") == -1
    assert r.items("l") == b("a")
    assert r.log() == []


def test_linsert_checks_its_syntax_before_the_key(r: World) -> None:
    assert r("LINSERT", "missing", "aft3r", "a", "b") == SYNTAX


# ------------------------------------------------------------ reads


def test_llen(r: World) -> None:
    assert r("LLEN", "l") == 0
    r("RPUSH", "l", "a", "b")
    assert r("LLEN", "l") == 2


@pytest.mark.parametrize(
    ("index", "expected"),
    [("0", b"a"), ("2", b"c"), ("-1", b"c"), ("-3", b"a"), ("3", None), ("-4", None)],
)
def test_lindex(r: World, index: str, expected: bytes | None) -> None:
    r("RPUSH", "l", "a", "b", "c")
    assert r("LINDEX", "l", index) == expected


def test_lindex_looks_at_the_key_before_the_index(r: World) -> None:
    assert r("LINDEX", "missing", "x") is None
    r("RPUSH", "l", "a")
    assert r("LINDEX", "l", "x") == NOT_INTEGER
    assert r("LINDEX", "l", "01") == NOT_INTEGER
    assert r("LINDEX", "l", "9223372036854775808") == NOT_INTEGER
    assert r("LINDEX", "l", "1" * 5000) == NOT_INTEGER
    assert r("LINDEX", "l", LONG_MIN.decode()) is None


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        ("0", "-1", "abcde"),
        ("0", "0", "a"),
        ("1", "3", "bcd"),
        ("-3", "-2", "cd"),
        ("-100", "100", "abcde"),
        ("3", "1", ""),
        ("5", "10", ""),
        ("0", "-6", ""),
        ("-1", "-1", "e"),
        ("2", "-3", "c"),
    ],
)
def test_lrange(r: World, start: str, stop: str, expected: str) -> None:
    r("RPUSH", "l", *"abcde")
    assert r("LRANGE", "l", start, stop) == b(*expected)


def test_lrange_parses_its_indexes_before_the_key(r: World) -> None:
    assert r("LRANGE", "missing", "0", "-1") == []
    assert r("LRANGE", "missing", "a", "-1") == NOT_INTEGER
    assert r("LRANGE", "missing", "0", "1.5") == NOT_INTEGER


def _included(index: int, start: int, stop: int, length: int) -> bool:
    # Redis's rule read plainly: negative indexes count from the end.
    first = start + length if start < 0 else start
    last = stop + length if stop < 0 else stop
    return first <= index <= last


@given(
    items=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=8),
    start=st.integers(-10, 10),
    stop=st.integers(-10, 10),
)
def test_lrange_and_ltrim_keep_the_same_elements(
    items: list[str], start: int, stop: int
) -> None:
    r = World()
    r("RPUSH", "l", *items)
    expected = [
        item.encode()
        for index, item in enumerate(items)
        if _included(index, start, stop, len(items))
    ]
    assert r("LRANGE", "l", str(start), str(stop)) == expected
    assert r("LTRIM", "l", str(start), str(stop)) == OK
    assert r.items("l") == expected
    # A list trimmed to nothing is gone, as Redis keeps no empty list.
    assert (b"l" in r.state.dbs[0].lists) == bool(expected)


# ------------------------------------------------------------ LPOS

LPOS_CASES = [
    # The examples of Redis's LPOS page, on a b c 1 2 3 c c.
    (["c"], 2),
    (["c", "RANK", "2"], 6),
    (["c", "RANK", "-1"], 7),
    (["c", "COUNT", "2"], [2, 6]),
    (["c", "RANK", "-1", "COUNT", "2"], [7, 6]),
    (["c", "COUNT", "0"], [2, 6, 7]),
    (["c", "RANK", "2", "COUNT", "0"], [6, 7]),
    (["c", "RANK", "-2", "COUNT", "0"], [6, 2]),
    (["c", "MAXLEN", "3"], 2),
    (["c", "MAXLEN", "2"], None),
    (["c", "COUNT", "0", "MAXLEN", "7"], [2, 6]),
    (["c", "RANK", "-1", "MAXLEN", "1"], 7),
    (["c", "RANK", "4"], None),
    (["c", "RANK", "4", "COUNT", "1"], []),
    (["x"], None),
    (["x", "COUNT", "0"], []),
    (["c", "count", "1", "COUNT", "5"], [2, 6, 7]),  # the last one wins
]


@pytest.mark.parametrize(("args", "expected"), LPOS_CASES)
def test_lpos(r: World, args: list[str], expected: Reply) -> None:
    r("RPUSH", "l", *"abc123cc")
    assert r("LPOS", "l", *args) == expected


def test_lpos_on_a_missing_key(r: World) -> None:
    assert r("LPOS", "missing", "a") is None
    assert r("LPOS", "missing", "a", "COUNT", "1") == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["RANK", "0"],
            Err(
                b"ERR RANK can't be zero: use 1 to start from the first match, "
                b"2 from the second ... or use negative to start from the end "
                b"of the list"
            ),
        ),
        (["RANK", "x"], NOT_INTEGER),
        (
            ["RANK", LONG_MIN.decode()],
            Err(
                b"ERR value is out of range, value must between "
                b"-9223372036854775807 and 9223372036854775807"
            ),
        ),
        (["COUNT", "-1"], Err(b"ERR COUNT can't be negative")),
        (["COUNT", "x"], Err(b"ERR COUNT can't be negative")),
        (["MAXLEN", "-1"], Err(b"ERR MAXLEN can't be negative")),
        (["RANK"], SYNTAX),
        (["FIRST", "1"], SYNTAX),
        (["COUNT", "1", "MAXLEN"], SYNTAX),
    ],
)
def test_lpos_refuses_bad_options_even_without_a_key(
    r: World, args: list[str], expected: Err
) -> None:
    assert r("LPOS", "missing", "a", *args) == expected


# ------------------------------------------------------------ LSET, LREM, LTRIM


def test_lset(r: World) -> None:
    r("RPUSH", "l", "a", "b", "c")
    r.log()
    assert r("LSET", "l", "0", "A") == OK
    assert r("LSET", "l", "-1", "C") == OK
    assert r.items("l") == b("A", "b", "C")
    assert r.log() == [["LSET", "l", "0", "A"], ["LSET", "l", "-1", "C"]]


def test_lset_errors(r: World) -> None:
    assert r("LSET", "missing", "x", "v") == Err(b"ERR no such key")
    r("RPUSH", "l", "a")
    r.log()
    assert r("LSET", "l", "x", "v") == NOT_INTEGER
    assert r("LSET", "l", "1", "v") == Err(b"ERR index out of range")
    assert r("LSET", "l", "-2", "v") == Err(b"ERR index out of range")
    assert r.log() == []


@pytest.mark.parametrize(
    ("count", "removed", "left"),
    [
        ("2", 2, "bxaxa"),
        ("-2", 2, "aabxx"),
        ("0", 4, "bxx"),
        ("10", 4, "bxx"),
        ("-10", 4, "bxx"),
    ],
)
def test_lrem(r: World, count: str, removed: int, left: str) -> None:
    r("RPUSH", "l", *"aabxaxa")
    r.log()
    assert r("LREM", "l", count, "a") == removed
    assert r.items("l") == b(*left)
    assert r.log() == [["LREM", "l", count, "a"]]


def test_lrem_that_removes_nothing_logs_nothing(r: World) -> None:
    assert r("LREM", "missing", "0", "a") == 0
    r("RPUSH", "l", "b")
    r.log()
    assert r("LREM", "l", "0", "a") == 0
    assert r.log() == []


def test_lrem_of_every_element_deletes_the_key(r: World) -> None:
    r("RPUSH", "l", "a", "a")
    assert r("LREM", "l", "0", "a") == 2
    assert b"l" not in r.state.dbs[0].lists
    assert r("LLEN", "l") == 0


def test_lrem_count_errors(r: World) -> None:
    assert r("LREM", "l", "x", "a") == NOT_INTEGER
    assert r("LREM", "l", LONG_MIN.decode(), "a") == Err(
        b"ERR value is out of range, value must between "
        b"-9223372036854775807 and 9223372036854775807"
    )


def test_ltrim(r: World) -> None:
    assert r("LTRIM", "missing", "0", "1") == OK
    r("RPUSH", "l", *"abcde")
    r.log()
    assert r("LTRIM", "l", "1", "-2") == OK
    assert r.items("l") == b("b", "c", "d")
    assert r("LTRIM", "l", "0", "-1") == OK  # keeps everything: not logged
    assert r("LTRIM", "l", "5", "10") == OK
    assert b"l" not in r.state.dbs[0].lists
    assert r.log() == [["LTRIM", "l", "1", "-2"], ["LTRIM", "l", "5", "10"]]


def test_ltrim_parses_before_the_key(r: World) -> None:
    assert r("LTRIM", "missing", "x", "1") == NOT_INTEGER
    assert r("LTRIM", "missing", "0", "") == NOT_INTEGER


# ------------------------------------------------------------ LPOP, RPOP


def test_lpop_and_rpop_one(r: World) -> None:
    r("RPUSH", "l", "a", "b", "c")
    r.log()
    assert r("LPOP", "l") == b"a"
    assert r("RPOP", "l") == b"c"
    assert r.items("l") == b("b")
    assert r.log() == [["LPOP", "l"], ["RPOP", "l"]]


def test_pops_with_a_count_give_an_array_in_pop_order(r: World) -> None:
    r("RPUSH", "l", *"abcdef")
    r.log()
    assert r("LPOP", "l", "2") == b("a", "b")
    assert r("RPOP", "l", "2") == b("f", "e")
    assert r("LPOP", "l", "10") == b("c", "d")
    assert b"l" not in r.state.dbs[0].lists
    assert r.log() == [["LPOP", "l", "2"], ["RPOP", "l", "2"], ["LPOP", "l", "10"]]


def test_pop_of_the_last_element_deletes_the_key(r: World) -> None:
    r("RPUSH", "l", "a")
    assert r("RPOP", "l") == b"a"
    assert b"l" not in r.state.dbs[0].lists


@pytest.mark.parametrize("name", ["LPOP", "RPOP"])
def test_pops_on_a_missing_key(r: World, name: str) -> None:
    # Redis's list.tcl: $-1 without a count, *-1 with one (even 0) in RESP2.
    assert r(name, "missing") is None
    assert r(name, "missing", "1") is NULL_ARRAY
    assert r(name, "missing", "0") is NULL_ARRAY
    assert encode(NULL_ARRAY, False) == b"*-1\r\n"
    assert encode(NULL_ARRAY, True) == b"_\r\n"
    assert r.log() == []


def test_pop_count_zero_on_a_list_is_an_empty_array(r: World) -> None:
    r("RPUSH", "l", "a")
    r.log()
    assert r("LPOP", "l", "0") == []
    assert r.items("l") == b("a")
    assert r.log() == []


@pytest.mark.parametrize("count", ["-1", "x", "1.0", ""])
def test_pop_count_must_be_positive_whatever_it_is(r: World, count: str) -> None:
    # getPositiveLongFromObjectOrReply gives its one text for both faults.
    assert r("LPOP", "l", count) == MUST_BE_POSITIVE


def test_pop_with_too_many_arguments(r: World) -> None:
    assert r("RPOP", "l", "1", "2") == Err(
        b"ERR wrong number of arguments for 'rpop' command"
    )


# ------------------------------------------------------------ expiry


def test_an_expired_list_is_gone_for_every_command(r: World) -> None:
    r("RPUSH", "l", "a", "b")
    r.state.dbs[0].expires[b"l"] = 1_000_500  # ms: half a second from now
    assert r("LLEN", "l") == 2
    r.now += 0.5
    r.log()
    assert r("LLEN", "l") == 0
    assert r("LPOP", "l") is None
    assert r("LRANGE", "l", "0", "-1") == []
    assert r("RPUSHX", "l", "c") == 0
    assert r("LPUSH", "l", "c") == 1  # a new list, without the expiry
    assert r.items("l") == b("c")
    assert b"l" not in r.state.dbs[0].expires
    assert r.log() == [["LPUSH", "l", "c"]]


def test_an_expired_source_moves_nothing(r: World) -> None:
    r("RPUSH", "src", "a")
    r.state.dbs[0].expires[b"src"] = 1_000_000
    r.log()
    assert r("LMOVE", "src", "dst", "LEFT", "LEFT") is None
    assert r.items("dst") == []
    assert r.log() == []


# ------------------------------------------------------------ LMOVE, RPOPLPUSH


@pytest.mark.parametrize(
    ("wherefrom", "whereto", "moved", "src", "dst"),
    [
        ("LEFT", "LEFT", "a", "bc", "axy"),
        ("LEFT", "RIGHT", "a", "bc", "xya"),
        ("RIGHT", "LEFT", "c", "ab", "cxy"),
        ("right", "right", "c", "ab", "xyc"),
    ],
)
def test_lmove(
    r: World, wherefrom: str, whereto: str, moved: str, src: str, dst: str
) -> None:
    r("RPUSH", "src", *"abc")
    r("RPUSH", "dst", *"xy")
    r.log()
    r.state.waiting[(0, b"dst")] = "a client blocked on dst"
    assert r("LMOVE", "src", "dst", wherefrom, whereto) == moved.encode()
    assert (r.items("src"), r.items("dst")) == (b(*src), b(*dst))
    assert r.log() == [["LMOVE", "src", "dst", wherefrom, whereto]]
    assert (0, b"dst") in r.state.ready


@pytest.mark.parametrize(
    ("wherefrom", "whereto", "after"),
    [("LEFT", "RIGHT", "bca"), ("RIGHT", "LEFT", "cab"), ("LEFT", "LEFT", "abc")],
)
def test_lmove_onto_itself_rotates(
    r: World, wherefrom: str, whereto: str, after: str
) -> None:
    r("RPUSH", "l", *"abc")
    r("LMOVE", "l", "l", wherefrom, whereto)
    assert r.items("l") == b(*after)


def test_rotating_a_one_element_list_keeps_it(r: World) -> None:
    r("RPUSH", "l", "a")
    assert r("RPOPLPUSH", "l", "l") == b"a"
    assert r.items("l") == b("a")


def test_lmove_creates_the_destination_and_deletes_an_emptied_source(
    r: World,
) -> None:
    r("RPUSH", "src", "a")
    assert r("LMOVE", "src", "dst", "LEFT", "RIGHT") == b"a"
    assert b"src" not in r.state.dbs[0].lists
    assert r.items("dst") == b("a")


def test_lmove_from_a_missing_source(r: World) -> None:
    assert r("LMOVE", "src", "dst", "LEFT", "RIGHT") is None
    assert r("RPOPLPUSH", "src", "dst") is None
    assert b"dst" not in r.state.dbs[0].lists
    assert r.log() == []


def test_lmove_checks_its_directions_first(r: World) -> None:
    assert r("LMOVE", "src", "dst", "UP", "LEFT") == SYNTAX
    assert r("LMOVE", "src", "dst", "LEFT", "DOWN") == SYNTAX


def test_rpoplpush(r: World) -> None:
    r("RPUSH", "src", "a", "b")
    r("RPUSH", "dst", "x")
    r.log()
    assert r("RPOPLPUSH", "src", "dst") == b"b"
    assert (r.items("src"), r.items("dst")) == (b("a"), b("b", "x"))
    assert r.log() == [["RPOPLPUSH", "src", "dst"]]


# ------------------------------------------------------------ LMPOP


def test_lmpop_pops_from_the_first_key_with_a_list(r: World) -> None:
    r("RPUSH", "b", "1", "2", "3")
    r("RPUSH", "c", "x")
    r.log()
    assert r("LMPOP", "3", "a", "b", "c", "LEFT") == [b"b", b("1")]
    assert r("LMPOP", "2", "a", "b", "right", "COUNT", "5") == [b"b", b("3", "2")]
    assert r("LMPOP", "3", "a", "b", "c", "LEFT", "count", "2") == [b"c", b("x")]
    assert r.state.dbs[0].lists == {}
    # Logged as the pop it was, with the number actually popped.
    assert r.log() == [["LPOP", "b", "1"], ["RPOP", "b", "2"], ["LPOP", "c", "1"]]


def test_lmpop_with_nothing_to_pop(r: World) -> None:
    assert r("LMPOP", "2", "a", "b", "LEFT") is NULL_ARRAY
    assert r.log() == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["0", "a", "LEFT"], Err(b"ERR numkeys should be greater than 0")),
        (["-1", "a", "LEFT"], Err(b"ERR numkeys should be greater than 0")),
        (["x", "a", "LEFT"], Err(b"ERR numkeys should be greater than 0")),
        (["2", "a", "LEFT"], SYNTAX),
        (["9223372036854775807", "a", "LEFT"], SYNTAX),
        (["1", "a", "UP"], SYNTAX),
        (["1", "a", "LEFT", "COUNT"], SYNTAX),
        (["1", "a", "LEFT", "COUNT", "0"], Err(b"ERR count should be greater than 0")),
        (["1", "a", "LEFT", "COUNT", "x"], Err(b"ERR count should be greater than 0")),
        (["1", "a", "LEFT", "COUNT", "1", "COUNT", "1"], SYNTAX),
        (["1", "a", "LEFT", "LIMIT", "1"], SYNTAX),
    ],
)
def test_lmpop_errors(r: World, args: list[str], expected: Err) -> None:
    r("RPUSH", "a", "1")
    assert r("LMPOP", *args) == expected
    assert r.items("a") == b("1")


# ------------------------------------------------------------ timeouts


def test_timeouts_in_seconds_with_decimals(r: World) -> None:
    # Every reading of a timeout is mqd.args.parse_timeout's (tested there).
    assert r.block("BLPOP", "q", "1.5").timeout == 1.5
    assert r.block("BRPOP", "q", "0.0001").timeout == 0.001  # rounded up
    assert r.block("BLMOVE", "q", "p", "LEFT", "LEFT", "0").timeout == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1", NEGATIVE),
        ("abc", NOT_A_FLOAT),
        ("9223372036854775.807", OUT_OF_RANGE),  # fits, but not with now added
    ],
)
def test_bad_timeouts(r: World, text: str, expected: Err) -> None:
    for argv in (
        ["BLPOP", "q", text],
        ["BRPOP", "q", "p", text],
        ["BLMOVE", "q", "p", "LEFT", "RIGHT", text],
        ["BRPOPLPUSH", "q", "p", text],
        ["BLMPOP", text, "1", "q", "LEFT"],
    ):
        assert r(*argv) == expected, argv


def test_the_timeout_is_checked_even_when_there_is_data(r: World) -> None:
    r("RPUSH", "q", "a")
    assert r("BLPOP", "q", "-1") == NEGATIVE
    assert r.items("q") == b("a")


def test_arguments_are_checked_before_the_timeout(r: World) -> None:
    assert r("BLMOVE", "q", "p", "UP", "LEFT", "x") == SYNTAX
    assert r("BLMPOP", "x", "0", "q", "LEFT") == Err(
        b"ERR numkeys should be greater than 0"
    )
    assert r("BLMPOP", "x", "1", "q", "UP") == SYNTAX


# ------------------------------------------------------------ BLPOP, BRPOP


def test_blpop_with_data_pops_at_once_and_logs_lpop(r: World) -> None:
    r("RPUSH", "b", "1", "2")
    r.log()
    assert r("BLPOP", "a", "b", "0") == b("b", "1")
    assert r("BRPOP", "a", "b", "0") == b("b", "2")
    assert r.log() == [["LPOP", "b"], ["RPOP", "b"]]
    assert r.state.dbs[0].lists == {}


def test_blpop_blocks_on_each_key_once(r: World) -> None:
    waiting = r.block("BLPOP", "a", "b", "a", "2.5")
    assert waiting.keys == [b"a", b"b"]
    assert waiting.timeout == 2.5
    assert waiting.timeout_reply is NULL_ARRAY
    assert waiting.retry() is None
    assert r.log() == []


def test_retry_serves_after_a_push(r: World) -> None:
    waiting = r.block("BLPOP", "a", "b", "0")
    r("RPUSH", "b", "x", "y")
    r.log()
    assert waiting.retry() == b("b", "x")
    assert r.log() == [["LPOP", "b"]]
    assert waiting.retry() == b("b", "y")
    assert waiting.retry() is None
    assert r.state.dbs[0].lists == {}


def test_retry_pops_the_first_key_with_data_in_argument_order(r: World) -> None:
    waiting = r.block("BRPOP", "a", "b", "c", "0")
    r("RPUSH", "c", "3")
    r("RPUSH", "b", "1", "2")
    assert waiting.retry() == b("b", "2")
    assert waiting.retry() == b("b", "1")
    assert waiting.retry() == b("c", "3")


def test_retries_called_in_order_pop_in_order(r: World) -> None:
    # FIFO is the server's: it calls the retries in the order clients blocked.
    first = r.block("BLPOP", "q", "0", client=r.connect())
    second = r.block("BLPOP", "q", "0", client=r.connect())
    r("RPUSH", "q", "a", "b")
    r.log()
    assert first.retry() == b("q", "a")
    assert second.retry() == b("q", "b")
    assert r.log() == [["LPOP", "q"], ["LPOP", "q"]]


def test_a_served_client_pops_in_its_own_database(r: World) -> None:
    other = r.connect()
    other.db_index = 3
    waiting = r.block("BLPOP", "q", "0", client=other)
    r("RPUSH", "q", "a")  # database 0: not the one it waits on
    assert waiting.retry() is None
    r.run("RPUSH", "q", "b", client=other)
    r.logged.clear()
    assert waiting.retry() == b("q", "b")
    assert r.logged == [(3, b("LPOP", "q"))]
    assert r.items("q") == b("a")


def test_inside_multi_a_blocking_pop_times_out_at_once(r: World) -> None:
    assert run_queued(r.client, [b"BLPOP", b"q", b"0"]) is NULL_ARRAY
    r("RPUSH", "q", "a")
    assert run_queued(r.client, [b"BLPOP", b"q", b"0"]) == b("q", "a")


@pytest.mark.parametrize(
    ("argv", "resp2"),
    [
        (["BLPOP", "q", "0"], b"*-1\r\n"),
        (["BRPOP", "q", "p", "1"], b"*-1\r\n"),
        (["BLMPOP", "0", "1", "q", "LEFT"], b"*-1\r\n"),
        # t_list.c's blmoveGenericCommand: addReplyNull() where it may not
        # block, though its timeout gives the null array.
        (["BLMOVE", "q", "p", "LEFT", "RIGHT", "0"], b"$-1\r\n"),
        (["BRPOPLPUSH", "q", "p", "1"], b"$-1\r\n"),
    ],
)
def test_inside_multi_blocking_commands_answer_their_null_at_once(
    r: World, argv: list[str], resp2: bytes
) -> None:
    reply = run_queued(r.client, [word.encode() for word in argv])
    assert not isinstance(reply, NoReply)
    assert encode(reply, False) == resp2
    assert encode(reply, True) == b"_\r\n"
    assert r.block(*argv).timeout_reply is NULL_ARRAY
    assert r.items("p") == []


# ------------------------------------------------------------ BLMOVE, BRPOPLPUSH


def test_blmove_with_data_moves_at_once_and_logs_lmove(r: World) -> None:
    r("RPUSH", "src", "a", "b")
    r.log()
    assert r("BLMOVE", "src", "dst", "RIGHT", "left", "0") == b"b"
    assert r("BRPOPLPUSH", "src", "dst", "0") == b"a"
    assert r.items("dst") == b("a", "b")
    assert r.log() == [
        ["LMOVE", "src", "dst", "RIGHT", "left"],
        ["RPOPLPUSH", "src", "dst"],
    ]


def test_blmove_blocks_on_its_source_only(r: World) -> None:
    waiting = r.block("BLMOVE", "src", "dst", "LEFT", "RIGHT", "0.5")
    assert (waiting.keys, waiting.timeout) == ([b"src"], 0.5)
    # Redis answers every timed-out list command with the null array.
    assert waiting.timeout_reply is NULL_ARRAY
    r("RPUSH", "dst", "x")
    assert waiting.retry() is None
    r("RPUSH", "src", "a", "b")
    r.log()
    r.state.ready.clear()
    r.state.waiting[(0, b"dst")] = "a client blocked on dst"
    assert waiting.retry() == b"a"
    assert (r.items("src"), r.items("dst")) == (b("b"), b("x", "a"))
    assert r.log() == [["LMOVE", "src", "dst", "LEFT", "RIGHT"]]
    # The destination was pushed to: clients blocked on it get their turn.
    assert (0, b"dst") in r.state.ready


def test_brpoplpush_blocks_and_is_logged_as_rpoplpush(r: World) -> None:
    waiting = r.block("BRPOPLPUSH", "src", "dst", "0")
    assert waiting.keys == [b"src"]
    r("RPUSH", "src", "a", "b")
    r.log()
    assert waiting.retry() == b"b"
    assert r.log() == [["RPOPLPUSH", "src", "dst"]]


def test_blmove_rotation_served_later(r: World) -> None:
    waiting = r.block("BLMOVE", "l", "l", "LEFT", "RIGHT", "0")
    r("RPUSH", "l", "a", "b")
    assert waiting.retry() == b"a"
    assert r.items("l") == b("b", "a")


# ------------------------------------------------------------ BLMPOP


def test_blmpop_with_data_pops_at_once(r: World) -> None:
    r("RPUSH", "b", "1", "2", "3")
    r.log()
    assert r("BLMPOP", "0", "2", "a", "b", "RIGHT", "COUNT", "2") == [b"b", b("3", "2")]
    assert r.log() == [["RPOP", "b", "2"]]


def test_blmpop_blocks_and_serves_the_first_key_with_data(r: World) -> None:
    waiting = r.block("BLMPOP", "0.25", "3", "a", "b", "a", "LEFT", "COUNT", "10")
    assert (waiting.keys, waiting.timeout) == ([b"a", b"b"], 0.25)
    assert waiting.timeout_reply is NULL_ARRAY
    assert waiting.retry() is None
    r("RPUSH", "b", "1", "2")
    r.log()
    assert waiting.retry() == [b"b", b("1", "2")]
    assert r.log() == [["LPOP", "b", "2"]]
    assert r.state.dbs[0].lists == {}


# ------------------------------------------------------------ WATCH


@pytest.mark.parametrize(
    ("argv", "touched"),
    [
        (["LPUSH", "l", "x"], True),
        (["RPUSHX", "l", "x"], True),
        (["LINSERT", "l", "BEFORE", "a", "x"], True),
        (["LSET", "l", "0", "x"], True),
        (["LREM", "l", "0", "a"], True),
        (["LTRIM", "l", "0", "-1"], True),  # Redis signals even so
        (["LPOP", "l"], True),
        (["LMPOP", "1", "l", "LEFT"], True),
        (["LMOVE", "l", "other", "LEFT", "LEFT"], True),
        (["LMOVE", "other", "l", "LEFT", "LEFT"], False),  # source missing
        (["BLPOP", "l", "0"], True),
        (["LRANGE", "l", "0", "-1"], False),
        (["LPOS", "l", "a"], False),
        (["LREM", "l", "0", "z"], False),
        (["LINSERT", "l", "BEFORE", "z", "x"], False),
    ],
)
def test_writes_touch_their_keys(r: World, argv: list[str], touched: bool) -> None:
    r("RPUSH", "l", "a", "b")
    watcher = r.connect()
    r.state.watchers[(0, b"l")] = {watcher}
    r(*argv)
    assert watcher.dirty is touched
