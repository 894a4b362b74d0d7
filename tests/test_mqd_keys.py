"""The key and database commands, against what Redis answers (src/db.c,
src/expire.c, the command docs)."""

from __future__ import annotations

import random
from typing import Any

import pytest

# mqd.transactions registers WATCH: to see which keys a command touches.
from mqd import keys, transactions
from mqd.replies import OK, Err, Simple, encode
from mqd.table import Client, execute
from mqd_support import Table

assert keys  # imported to register their commands
assert transactions


class World(Table):
    """A State with a clock the test moves and a log it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.client = self.connect()

    def run(self, *args: bytes | str | int, client: Client | None = None) -> Any:
        # Any: a test compares the reply with what Redis answers.
        argv = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
        return execute(client or self.client, argv)

    def push(self, key: bytes, *values: bytes, db: int = 0) -> None:
        self.state.dbs[db].create(key).extend(values or (b"x",))

    def scan_all(self, *options: bytes | str | int) -> list[bytes]:
        cursor, found = b"0", []
        while True:
            reply = self.run("SCAN", cursor, *options)
            assert isinstance(reply, list)
            cursor, keys = reply
            assert isinstance(keys, list)
            found += keys
            if cursor == b"0":
                return found


@pytest.fixture
def w() -> World:
    return World()


# ---------------------------------------------------------------- DEL, EXISTS


def test_del_counts_what_it_deleted_and_logs_only_that(w: World) -> None:
    w.push(b"a")
    w.push(b"b")
    assert w.run("DEL", "a", "b", "c", "a") == 2
    assert w.run("EXISTS", "a", "b") == 0
    assert w.logged == [(0, [b"DEL", b"a", b"b"])]
    assert w.run("DEL", "a") == 0
    assert len(w.logged) == 1  # nothing deleted, nothing logged


def test_unlink_is_del(w: World) -> None:
    w.push(b"a")
    assert w.run("UNLINK", "a", "b") == 1
    assert w.logged == [(0, [b"UNLINK", b"a"])]


def test_del_does_not_count_an_expired_key(w: World) -> None:
    w.push(b"a")
    assert w.run("PEXPIRE", "a", 100) == 1
    w.now += 0.1
    assert w.run("DEL", "a") == 0


def test_del_touches_watched_keys(w: World) -> None:
    other = w.connect()
    w.push(b"a")
    assert w.run("WATCH", "a", client=other) == OK
    w.run("DEL", "a")
    assert other.dirty


def test_exists_counts_a_key_as_often_as_named(w: World) -> None:
    w.push(b"a")
    assert w.run("EXISTS", "a", "a", "b") == 2


def test_del_and_exists_arity(w: World) -> None:
    assert w.run("DEL") == Err(b"ERR wrong number of arguments for 'del' command")
    assert w.run("EXISTS") == Err(b"ERR wrong number of arguments for 'exists' command")


# ---------------------------------------------------------------- TYPE


def test_type_is_list_or_none(w: World) -> None:
    w.push(b"q")
    assert w.run("TYPE", "q") == Simple(b"list")
    assert w.run("TYPE", "nothing") == Simple(b"none")
    assert (
        encode(Simple(b"list"), False) == encode(Simple(b"list"), True) == b"+list\r\n"
    )
    w.run("PEXPIRE", "q", 1)
    w.now += 0.001
    assert w.run("TYPE", "q") == Simple(b"none")


# ---------------------------------------------------------------- KEYS


def test_keys_with_a_pattern(w: World) -> None:
    # keyspace.tcl "KEYS with pattern", "KEYS to get all keys".
    for key in (b"key_x", b"key_y", b"key_z", b"foo_a", b"foo_b", b"foo_c"):
        w.push(key)
    assert sorted(w.run("KEYS", "foo*")) == [b"foo_a", b"foo_b", b"foo_c"]
    assert len(w.run("KEYS", "*")) == 6
    assert w.run("KEYS", "nomatch*") == []


def test_keys_star_includes_the_empty_key_and_skips_expired_ones(w: World) -> None:
    w.push(b"")
    w.push(b"gone")
    w.run("PEXPIRE", "gone", 1)
    w.now += 0.001
    assert w.run("KEYS", "*") == [b""]
    assert w.run("KEYS", "?*") == []


def test_keys_regression_nested_loops(w: World) -> None:
    w.push(b"a" * 40)
    assert w.run("KEYS", b"a*" * 20 + b"b") == []


# ---------------------------------------------------------------- SCAN


def test_scan_returns_every_key(w: World) -> None:
    keys = {b"key:%d" % n for n in range(1000)}
    for key in keys:
        w.push(key)
    found = w.scan_all()
    assert set(found) == keys
    assert len(found) == len(keys)  # this cursor scheme never repeats one
    assert set(w.scan_all("COUNT", 5)) == keys
    assert len(w.scan_all("MATCH", "key:1??")) == 100
    assert set(w.scan_all("TYPE", "list", "MATCH", "key:*", "COUNT", 10)) == keys
    assert w.scan_all("TYPE", "LIST") != []
    assert w.scan_all("TYPE", "string") == []


def test_scan_count_bounds_a_batch(w: World) -> None:
    for n in range(100):
        w.push(b"%d" % n)
    reply = w.run("SCAN", 0, "COUNT", 7)
    assert isinstance(reply, list)
    cursor, keys = reply
    assert cursor != b"0"
    assert isinstance(keys, list)
    assert 0 < len(keys) <= 7  # more only where hashes collide


def test_scan_of_an_empty_database(w: World) -> None:
    assert w.run("SCAN", 0) == [b"0", []]
    assert encode(w.run("SCAN", 0), False) == b"*2\r\n$1\r\n0\r\n*0\r\n"


def test_scan_skips_expired_keys(w: World) -> None:
    w.push(b"a")
    w.push(b"b")
    w.run("PEXPIRE", "b", 1)
    w.now += 0.001
    assert w.scan_all() == [b"a"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["abc"], b"ERR invalid cursor"),
        (["-1"], b"ERR invalid cursor"),
        (["18446744073709551616"], b"ERR invalid cursor"),
        ([0, "COUNT", 0], b"ERR syntax error"),
        ([0, "COUNT", -1], b"ERR syntax error"),
        ([0, "COUNT", "x"], b"ERR value is not an integer or out of range"),
        ([0, "COUNT"], b"ERR syntax error"),
        ([0, "MATCH"], b"ERR syntax error"),
        ([0, "TYPE", "string1"], b"ERR unknown type name 'string1'"),
        ([0, "TYPE", "a\r\nb"], b"ERR unknown type name 'a  b'"),
        ([0, "NOVALUES"], b"ERR NOVALUES option can only be used in HSCAN"),
        ([0, "FOO", "bar"], b"ERR syntax error"),
    ],
)
def test_scan_errors(w: World, args: list[str | int], error: bytes) -> None:
    assert w.run("SCAN", *args) == Err(error)


def test_scan_cursor_is_lenient_as_strtoull(w: World) -> None:
    w.push(b"a")
    assert w.run("SCAN", "18446744073709551615") == [b"0", []]
    assert w.run("SCAN", " +0") == [b"0", [b"a"]]


@pytest.mark.parametrize("seed", range(20))
def test_scan_returns_every_key_present_throughout(w: World, seed: int) -> None:
    """Keys come and go between calls; those present for the whole scan are
    each returned (once, here), and nothing returned was absent."""
    rnd = random.Random(seed)
    alive = {b"k%d" % n for n in range(rnd.randrange(0, 300))}
    for key in alive:
        w.push(key)
    throughout = set(alive)
    serial = 1000
    found: list[bytes] = []
    cursor = b"0"
    while True:
        reply = w.run("SCAN", cursor, "COUNT", rnd.choice([1, 3, 10]))
        assert isinstance(reply, list)
        cursor, keys = reply
        assert isinstance(keys, list)
        assert set(keys) <= alive
        found += keys
        if cursor == b"0":
            break
        for _ in range(rnd.randrange(0, 6)):
            if alive and rnd.random() < 0.5:
                gone = rnd.choice(sorted(alive))
                w.run("DEL", gone)
                alive.discard(gone)
                throughout.discard(gone)
            else:
                serial += 1
                w.push(b"k%d" % serial)
                alive.add(b"k%d" % serial)
    assert throughout <= set(found)
    assert len(found) == len(set(found))


def test_a_new_scan_sees_keys_added_during_an_older_one(w: World) -> None:
    for n in range(50):
        w.push(b"old%d" % n)
    reply = w.run("SCAN", 0, "COUNT", 5)
    assert isinstance(reply, list)
    older = reply[0]
    w.push(b"new")
    assert b"new" in w.scan_all()
    # The older scan goes on from where it was, and ends.
    while older != b"0":
        reply = w.run("SCAN", older, "COUNT", 5)
        assert isinstance(reply, list)
        older = reply[0]


# ---------------------------------------------------------------- RENAME


def test_rename_moves_the_list_and_its_ttl(w: World) -> None:
    w.push(b"a", b"1", b"2")
    w.run("PEXPIRE", "a", 5000)
    w.logged.clear()
    w.state.waiting[(0, b"b")] = "a client blocked on b"
    assert w.run("RENAME", "a", "b") == OK
    assert w.run("EXISTS", "a") == 0
    assert list(w.state.dbs[0].lists[b"b"]) == [b"1", b"2"]
    assert w.run("PTTL", "b") == 5000
    assert w.logged == [(0, [b"RENAME", b"a", b"b"])]
    assert (0, b"b") in w.state.ready  # clients blocked on b may be served


def test_rename_overwrites_the_target_and_its_ttl(w: World) -> None:
    w.push(b"a", b"new")
    w.push(b"b", b"old")
    w.run("EXPIRE", "b", 100)
    assert w.run("RENAME", "a", "b") == OK
    assert list(w.state.dbs[0].lists[b"b"]) == [b"new"]
    assert w.run("TTL", "b") == -1


def test_rename_errors_and_same_key(w: World) -> None:
    assert w.run("RENAME", "nokey", "x") == Err(b"ERR no such key")
    assert w.run("RENAME", "nokey", "nokey") == Err(b"ERR no such key")
    w.push(b"a")
    assert w.run("RENAME", "a", "a") == OK
    assert w.run("EXISTS", "a") == 1
    w.run("PEXPIRE", "a", 1)
    w.now += 0.001
    assert w.run("RENAME", "a", "b") == Err(b"ERR no such key")


def test_rename_touches_both_keys(w: World) -> None:
    first, second = w.connect(), w.connect()
    w.push(b"a")
    w.run("WATCH", "a", client=first)
    w.run("WATCH", "b", client=second)
    w.run("RENAME", "a", "b")
    assert first.dirty
    assert second.dirty


# ---------------------------------------------------------------- expiry


def test_expire_sets_a_deadline_logged_as_pexpireat(w: World) -> None:
    w.push(b"q")
    assert w.run("EXPIRE", "q", 10) == 1
    assert w.run("TTL", "q") == 10
    assert w.run("PTTL", "q") == 10_000
    assert w.run("EXPIRETIME", "q") == 1010
    assert w.run("PEXPIRETIME", "q") == 1_010_000
    assert w.logged == [(0, [b"PEXPIREAT", b"q", b"1010000"])]
    w.now += 9.999
    assert w.run("PTTL", "q") == 1
    w.now += 0.001
    assert w.run("TTL", "q") == -2
    assert w.run("EXISTS", "q") == 0


def test_ttl_rounds_to_the_nearest_second(w: World) -> None:
    w.push(b"q")
    w.run("PEXPIRE", "q", 1500)
    assert w.run("TTL", "q") == 2
    w.run("PEXPIRE", "q", 1499)
    assert w.run("TTL", "q") == 1


def test_ttl_of_a_missing_key_and_of_a_key_without_deadline(w: World) -> None:
    assert w.run("TTL", "none") == -2
    assert w.run("PTTL", "none") == -2
    assert w.run("EXPIRETIME", "none") == -2
    w.push(b"q")
    assert w.run("TTL", "q") == -1
    assert w.run("PTTL", "q") == -1
    assert w.run("PEXPIRETIME", "q") == -1


def test_expireat_and_pexpireat_are_absolute(w: World) -> None:
    w.push(b"q")
    assert w.run("EXPIREAT", "q", 1100) == 1
    assert w.run("TTL", "q") == 100
    assert w.run("PEXPIREAT", "q", 1_000_500) == 1
    assert w.run("PTTL", "q") == 500
    assert w.logged[-1] == (0, [b"PEXPIREAT", b"q", b"1000500"])


@pytest.mark.parametrize(
    "args", [("EXPIRE", 0), ("EXPIRE", -5), ("PEXPIRE", 0), ("EXPIREAT", 1000)]
)
def test_a_time_not_in_the_future_deletes_the_key(
    w: World, args: tuple[str, int]
) -> None:
    w.push(b"q")
    other = w.connect()
    w.run("WATCH", "q", client=other)
    assert w.run(args[0], "q", args[1]) == 1
    assert w.run("EXISTS", "q") == 0
    assert w.logged == [(0, [b"DEL", b"q"])]
    assert other.dirty


def test_expire_on_a_missing_key(w: World) -> None:
    assert w.run("EXPIRE", "none", 10) == 0
    assert w.run("EXPIRE", "none", -1) == 0
    assert w.logged == []


def test_expire_options(w: World) -> None:
    w.push(b"q")
    assert w.run("EXPIRE", "q", 100, "XX") == 0  # no deadline yet
    assert w.run("EXPIRE", "q", 100, "GT") == 0  # none is infinite
    assert w.run("EXPIRE", "q", 100, "NX") == 1
    assert w.run("EXPIRE", "q", 200, "NX") == 0
    assert w.run("EXPIRE", "q", 200, "xx") == 1
    assert w.run("EXPIRE", "q", 100, "GT") == 0
    assert w.run("EXPIRE", "q", 200, "GT") == 0  # equal is not greater
    assert w.run("EXPIRE", "q", 300, "GT") == 1
    assert w.run("EXPIRE", "q", 300, "LT") == 0
    assert w.run("EXPIRE", "q", 50, "LT") == 1
    assert w.run("TTL", "q") == 50
    assert w.run("EXPIRE", "q", 40, "XX", "LT") == 1
    assert w.run("PERSIST", "q") == 1
    assert w.run("EXPIRE", "q", 10, "LT") == 1  # none is infinite: less
    assert w.run("TTL", "q") == 10


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["q", 10, "NX", "XX"],
            b"ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            ["q", 10, "NX", "GT"],
            b"ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            ["q", 10, "GT", "LT"],
            b"ERR GT and LT options at the same time are not compatible",
        ),
        (["q", 10, "Foo"], b"ERR Unsupported option Foo"),
        (["q", 10, "a\nb"], b"ERR Unsupported option a b"),
        (["q", "ten"], b"ERR value is not an integer or out of range"),
        (["q", "1.5"], b"ERR value is not an integer or out of range"),
        (["q", 2**63 // 1000 + 1], b"ERR invalid expire time in 'expire' command"),
        (["q", -(2**63 // 1000) - 1], b"ERR invalid expire time in 'expire' command"),
        (["q", 2**63 - 1000], b"ERR invalid expire time in 'expire' command"),
    ],
)
def test_expire_errors(w: World, args: list[str | int], error: bytes) -> None:
    w.push(b"q")
    assert w.run("EXPIRE", *args) == Err(error)
    assert w.run("TTL", "q") == -1


def test_expire_errors_name_the_command(w: World) -> None:
    w.push(b"q")
    assert w.run("pexpire", "q", 2**63 - 1) == Err(
        b"ERR invalid expire time in 'pexpire' command"
    )
    assert w.run("EXPIRE", "q") == Err(
        b"ERR wrong number of arguments for 'expire' command"
    )


def test_persist(w: World) -> None:
    assert w.run("PERSIST", "none") == 0
    w.push(b"q")
    assert w.run("PERSIST", "q") == 0
    w.run("EXPIRE", "q", 10)
    w.logged.clear()
    assert w.run("PERSIST", "q") == 1
    assert w.run("TTL", "q") == -1
    assert w.logged == [(0, [b"PERSIST", b"q"])]


def test_expire_touches_the_key(w: World) -> None:
    # multi.tcl "WATCH will consider touched keys target of EXPIRE".
    other = w.connect()
    w.push(b"q")
    w.run("WATCH", "q", client=other)
    w.run("EXPIRE", "q", 10)
    assert other.dirty


# ---------------------------------------------------------------- databases


def test_dbsize(w: World) -> None:
    assert w.run("DBSIZE") == 0
    w.push(b"a")
    w.push(b"b")
    w.push(b"c", db=1)
    assert w.run("DBSIZE") == 2


def test_select_chooses_one_of_16_databases(w: World) -> None:
    w.push(b"a")
    assert w.run("SELECT", 15) == OK
    assert w.client.db_index == 15
    assert w.run("EXISTS", "a") == 0
    w.run("EXPIRE", "a", 10)
    w.push(b"b", db=15)
    w.run("DEL", "b")
    assert w.logged == [(15, [b"DEL", b"b"])]  # SELECT itself is not logged


@pytest.mark.parametrize(
    ("index", "error"),
    [
        ("16", b"ERR DB index is out of range"),
        ("-1", b"ERR DB index is out of range"),
        ("x", b"ERR value is not an integer or out of range"),
        ("1.0", b"ERR value is not an integer or out of range"),
        (
            "2147483648",
            b"ERR value is out of range, value must between -2147483648 and 2147483647",
        ),
    ],
)
def test_select_errors(w: World, index: str, error: bytes) -> None:
    assert w.run("SELECT", index) == Err(error)
    assert w.client.db_index == 0


def test_flushdb_empties_only_the_current_database(w: World) -> None:
    w.push(b"a")
    w.push(b"b", db=1)
    assert w.run("FLUSHDB") == OK
    assert w.run("DBSIZE") == 0
    assert len(w.state.dbs[1]) == 1
    assert w.logged == [(0, [b"FLUSHDB"])]
    assert w.run("FLUSHDB", "ASYNC") == OK
    assert w.run("flushdb", "sync") == OK


def test_flushall_empties_every_database(w: World) -> None:
    w.push(b"a")
    w.push(b"b", db=7)
    assert w.run("FLUSHALL", "SYNC") == OK
    assert all(len(db) == 0 for db in w.state.dbs)
    assert w.logged == [(0, [b"FLUSHALL"])]


@pytest.mark.parametrize("command", ["FLUSHDB", "FLUSHALL"])
def test_flush_options(w: World, command: str) -> None:
    assert w.run(command, "LAZY") == Err(b"ERR syntax error")
    assert w.run(command, "ASYNC", "SYNC") == Err(b"ERR syntax error")


def test_flush_touches_the_watched_keys_that_existed(w: World) -> None:
    # multi.tcl "FLUSHALL is able to touch the watched keys" and "FLUSHALL
    # does not touch non affected keys".
    present, missing = w.connect(), w.connect()
    w.push(b"x")
    w.run("WATCH", "x", client=present)
    w.run("WATCH", "y", client=missing)
    w.run("FLUSHALL")
    assert present.dirty
    assert not missing.dirty


def test_swapdb_swaps_data_not_clients(w: World) -> None:
    # keyspace.tcl "Coverage: basic SWAPDB test and unhappy path".
    w.push(b"swapkey", b"v1")
    w.run("PEXPIRE", "swapkey", 5000)
    w.logged.clear()
    w.run("SELECT", 1)
    assert w.run("DBSIZE") == 0
    w.state.waiting[(1, b"swapkey")] = "a client blocked on it"
    assert w.run("SWAPDB", 0, 1) == OK
    assert w.run("DBSIZE") == 1
    assert w.run("PTTL", "swapkey") == 5000
    w.run("SELECT", 0)
    assert w.run("DBSIZE") == 0
    assert w.logged == [(1, [b"SWAPDB", b"0", b"1"])]
    assert (1, b"swapkey") in w.state.ready  # clients blocked on it may be served
    assert w.run("SWAPDB", 3, 3) == OK


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([44, 55], b"ERR DB index is out of range"),
        ([0, 16], b"ERR DB index is out of range"),
        ([-1, 0], b"ERR DB index is out of range"),
        ([44, "a"], b"ERR invalid second DB index"),
        (["a", 1], b"ERR invalid first DB index"),
        ([2**31, 1], b"ERR invalid first DB index"),
    ],
)
def test_swapdb_errors(w: World, args: list[str | int], error: bytes) -> None:
    assert w.run("SWAPDB", *args) == Err(error)


def test_swapdb_touches_watched_keys_that_exist_in_either(w: World) -> None:
    # multi.tcl "SWAPDB is able to touch the watched keys that exist" and
    # "... that do not exist".
    in_zero, in_one, in_neither = w.connect(), w.connect(), w.connect()
    w.push(b"x", db=0)
    w.push(b"y", db=1)
    w.run("WATCH", "x", client=in_zero)
    w.run("WATCH", "y", client=in_one)  # missing in 0, in 1: SWAPDB creates it
    w.run("WATCH", "z", client=in_neither)
    w.run("SWAPDB", 0, 1)
    assert in_zero.dirty
    assert in_one.dirty
    assert not in_neither.dirty


def test_swapdb_does_not_touch_a_key_expired_in_both(w: World) -> None:
    # multi.tcl "SWAPDB does not touch stale key replaced with another stale key".
    watcher = w.connect()
    for db in (0, 1):
        w.push(b"x", db=db)
        w.state.dbs[db].expires[b"x"] = 1_000_001
    w.now += 0.002
    w.run("WATCH", "x", client=watcher)
    w.run("SWAPDB", 0, 1)
    assert not watcher.dirty


def test_resp3_replies(w: World) -> None:
    w.push(b"a")
    assert encode(w.run("KEYS", "*"), True) == b"*1\r\n$1\r\na\r\n"
    assert encode(w.run("TTL", "a"), True) == b":-1\r\n"
