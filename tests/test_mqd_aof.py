"""The append-only log: its bytes, its replay, torn and corrupt files,
group commit, and the rewrite in a forked child."""

from __future__ import annotations

import logging
import os
import resource
import select
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mqd.aof import (
    AppendOnlyLog,
    CorruptLog,
    Fsync,
    Record,
    encode,
    replay,
    rewrite_commands,
)
from mqd.keyspace import DATABASES, Database

Argv = list[bytes]
CLOCK = 1_000_000  # milliseconds: the databases' "now"


def databases() -> list[Database]:
    return [Database(lambda: CLOCK) for _ in range(DATABASES)]


def apply(dbs: list[Database], db: int, argv: Argv) -> None:
    """Just enough of the commands to rebuild data from a log."""
    name, key, rest = argv[0].upper(), argv[1], argv[2:]
    data = dbs[db]
    if name == b"RPUSH":
        data.create(key).extend(rest)
    elif name == b"LPUSH":
        data.create(key).extendleft(rest)
    elif name in (b"LPOP", b"RPOP"):
        value = data.get(key)
        assert value is not None
        value.popleft() if name == b"LPOP" else value.pop()
        data.drop_if_empty(key, value)
    elif name == b"PEXPIREAT":
        data.expires[key] = int(rest[0])
    else:
        raise AssertionError(f"no {name!r} here")


def contents(dbs: list[Database]) -> list[dict[bytes, tuple[list[bytes], int | None]]]:
    return [
        {key: (list(items), db.expires.get(key)) for key, items in db.lists.items()}
        for db in dbs
    ]


def load(path: Path) -> list[Database]:
    dbs = databases()
    for db, argv, _ in replay(str(path)):
        apply(dbs, db, argv)
    return dbs


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "mqd.aof"


def write_log(path: Path, commands: Iterable[tuple[int, Argv]]) -> None:
    log = AppendOnlyLog(str(path), fsync=Fsync.NO)
    for db, argv in commands:
        log.append(db, argv)
    log.close()


# ---------------------------------------------------------------- the bytes


def test_the_file_is_what_a_client_sends_with_select_before_a_new_db(
    path: Path,
) -> None:
    log = AppendOnlyLog(str(path), fsync=Fsync.ALWAYS)
    log.append(0, [b"RPUSH", b"q", b"a", b"b"])
    log.append(0, [b"LPOP", b"q"])
    log.append(12, [b"LPUSH", b"jobs", b"x\r\ny"])
    log.append(12, [b"MULTI"])
    log.append(12, [b"RPOP", b"jobs"])
    log.append(12, [b"EXEC"])
    log.close()
    assert path.read_bytes() == (
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"
        b"*4\r\n$5\r\nRPUSH\r\n$1\r\nq\r\n$1\r\na\r\n$1\r\nb\r\n"
        b"*2\r\n$4\r\nLPOP\r\n$1\r\nq\r\n"
        b"*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n"
        b"*3\r\n$5\r\nLPUSH\r\n$4\r\njobs\r\n$4\r\nx\r\ny\r\n"
        b"*1\r\n$5\r\nMULTI\r\n"
        b"*2\r\n$4\r\nRPOP\r\n$4\r\njobs\r\n"
        b"*1\r\n$4\r\nEXEC\r\n"
    )


def test_replay_gives_each_write_with_its_database_and_offset(path: Path) -> None:
    write_log(
        path,
        [
            (0, [b"RPUSH", b"q", b"a"]),
            (5, [b"RPUSH", b"q", b"b"]),
            (5, [b"MULTI"]),
            (5, [b"LPOP", b"q"]),
            (0, [b"LPOP", b"q"]),  # a SELECT inside the transaction
            (0, [b"EXEC"]),
            (0, [b"RPUSH", b"r", b""]),
        ],
    )
    data = path.read_bytes()
    records = list(replay(str(path)))
    assert [(db, argv) for db, argv, _ in records] == [
        (0, [b"RPUSH", b"q", b"a"]),
        (5, [b"RPUSH", b"q", b"b"]),
        (5, [b"LPOP", b"q"]),
        (0, [b"LPOP", b"q"]),
        (0, [b"RPUSH", b"r", b""]),
    ]
    for record in records:
        assert data[record.offset :].startswith(encode(record.argv))
    assert path.read_bytes() == data  # nothing was cut


def test_a_log_reopened_selects_again_and_appends(path: Path) -> None:
    write_log(path, [(3, [b"RPUSH", b"q", b"a"])])
    write_log(path, [(3, [b"RPUSH", b"q", b"b"])])
    assert path.read_bytes().count(b"SELECT") == 2
    assert [(r.db, r.argv) for r in replay(str(path))] == [
        (3, [b"RPUSH", b"q", b"a"]),
        (3, [b"RPUSH", b"q", b"b"]),
    ]


def test_no_file_and_an_empty_file_replay_as_nothing(path: Path) -> None:
    assert list(replay(str(path))) == []
    path.write_bytes(b"")
    assert list(replay(str(path))) == []


commands = st.lists(
    st.tuples(
        st.integers(0, DATABASES - 1),
        st.lists(st.binary(max_size=20), min_size=1, max_size=5).map(
            lambda args: [b"RPUSH", *args]
        ),
    ),
    max_size=20,
)


@given(commands)
def test_replay_gives_back_whatever_was_appended(
    written: list[tuple[int, Argv]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mqd.aof"
        write_log(path, written)
        assert [(r.db, r.argv) for r in replay(str(path))] == written


@pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="needs redis-server and redis-cli",
)
@pytest.mark.timeout(30)
def test_redis_cli_pipe_loads_the_log_into_a_real_redis(path: Path) -> None:
    dbs = databases()
    dbs[0].create(b"q").extend([b"a", b"b\r\n"])
    dbs[7].create(b"long").extend(b"%d" % n for n in range(200))
    dbs[7].create(b"ttl").append(b"x")
    dbs[7].expires[b"ttl"] = 4_000_000_000_000
    write_log(path, rewrite_commands(dbs))
    write_log(path, [(7, [b"MULTI"]), (7, [b"LPOP", b"long"]), (7, [b"EXEC"])])
    socket = str(path.parent / "redis.sock")
    server = subprocess.Popen(
        [
            *("redis-server", "--port", "0", "--unixsocket", socket),
            *("--save", "", "--appendonly", "no", "--dir", str(path.parent)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:  # its own word that it is ready
            if "ready to accept connections" in line.lower():
                break
        else:
            pytest.fail("redis-server stopped before it was ready")
        with path.open("rb") as log:
            piped = subprocess.run(
                ["redis-cli", "-s", socket, "--pipe"],
                stdin=log,
                capture_output=True,
                text=True,
                check=True,
            )
        assert "errors: 0" in piped.stdout

        def cli(*args: str) -> bytes:
            return subprocess.run(
                ["redis-cli", "-s", socket, *args], capture_output=True, check=True
            ).stdout

        assert cli("-n", "0", "LRANGE", "q", "0", "-1") == b"a\nb\r\n\n"
        assert cli("-n", "7", "LLEN", "long") == b"199\n"
        assert cli("-n", "7", "LINDEX", "long", "0") == b"1\n"
        assert cli("-n", "7", "PEXPIRETIME", "ttl") == b"4000000000000\n"
    finally:
        server.terminate()
        server.communicate()


# ---------------------------------------------------------------- torn tails

WHOLE = [(0, [b"RPUSH", b"q", b"a"]), (2, [b"RPUSH", b"q", b"b"])]
LAST = (2, [b"RPUSH", b"queue", b"hello"])


SELECT_5 = encode([b"SELECT", b"5"])
TRANSACTION = encode([b"MULTI"]) + encode([b"LPOP", b"q"]) + encode([b"EXEC"])


@pytest.mark.parametrize(
    "units",
    [
        pytest.param([encode(LAST[1])], id="a record"),
        pytest.param([SELECT_5, encode([b"RPUSH", b"q", b"c"])], id="SELECT, record"),
        pytest.param([TRANSACTION], id="a transaction"),
    ],
)
def test_a_tail_cut_anywhere_is_dropped_with_a_warning_and_truncated(
    path: Path, units: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """``units``: what follows the whole records, in the pieces replay keeps
    or drops whole (a SELECT kept gives no record)."""
    write_log(path, WHOLE)
    whole = path.read_bytes()
    data = whole + b"".join(units)
    boundaries = [len(whole)]
    for unit in units:
        boundaries.append(boundaries[-1] + len(unit))
    for cut in range(len(whole) + 1, len(data)):
        if cut in boundaries:
            continue
        kept = max(b for b in boundaries if b < cut)
        path.write_bytes(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mqd.aof"):
            assert [(r.db, r.argv) for r in replay(str(path))] == WHOLE
        assert path.read_bytes() == data[:kept], cut
        [warning] = caplog.records
        assert f"at byte {kept}; dropped its {cut - kept} bytes" in (
            warning.getMessage()
        )


def test_a_transaction_without_its_exec_is_dropped_whole(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_log(path, WHOLE)
    whole = path.read_bytes()
    write_log(path, [(2, [b"MULTI"]), (2, [b"LPOP", b"q"])])
    with caplog.at_level(logging.WARNING, logger="mqd.aof"):
        assert [(r.db, r.argv) for r in replay(str(path))] == WHOLE
    # The SELECT a new run of the log begins with is whole, and kept.
    assert path.read_bytes() == whole + encode([b"SELECT", b"2"])
    assert "a transaction without its EXEC" in caplog.text


def test_a_tail_of_nul_bytes_is_torn_too(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What a file system may leave after a power cut: the size grew, the
    # data never came.
    write_log(path, WHOLE)
    whole = path.read_bytes()
    for tail in (b"\0" * 4096, encode(LAST[1])[:20] + b"\0" * 100):
        path.write_bytes(whole + tail)
        with caplog.at_level(logging.WARNING, logger="mqd.aof"):
            assert [(r.db, r.argv) for r in replay(str(path))] == WHOLE
        assert path.read_bytes() == whole


def test_the_log_goes_on_after_a_torn_tail_is_cut(path: Path) -> None:
    write_log(path, WHOLE)
    with path.open("ab") as file:
        file.write(b"*3\r\n$5\r\nRPUSH\r\n$1\r\nq\r\n$3\r\nab")
    assert len(list(replay(str(path)))) == 2
    write_log(path, [(2, [b"RPUSH", b"q", b"d"])])
    assert [r.argv[2] for r in replay(str(path))] == [b"a", b"b", b"d"]


# ---------------------------------------------------------------- corruption


@pytest.mark.parametrize(
    ("damage", "reason", "shift"),
    [
        (b"+OK\r\n", "b'+OK' where b'*' and a length belong at byte {at}", 0),
        (b"*x\r\n", "b'*x' where b'*' and a length belong at byte {at}", 0),
        (b"*0\r\n", "a command of 0 arguments at byte {at}", 0),
        (b"*1\r\n:5\r\n", "b':5' where b'$' and a length belong at byte {at4}", 0),
        (b"*1\r\n$-1\r\n", "b'$-1' where b'$' and a length belong at byte {at4}", 0),
        (b"*1\r\n$4\r\nPINGX\r\n", "no CRLF after a bulk string at byte {at12}", 0),
        (
            b"*1\r\n$1073741824\r\n",
            "a bulk string of 1073741824 bytes at byte {at4}",
            0,
        ),
        (b"*1\r\n$" + b"1" * 40, "a line too long at byte {at4}", 0),
        (encode([b"EXEC"]), "EXEC without MULTI", 0),
        (encode([b"SELECT", b"16"]), "bad SELECT [b'16']", 0),
        (encode([b"MULTI"]) * 2, "MULTI inside a transaction", 15),
    ],
)
def test_a_damaged_record_before_the_end_stops_replay_naming_its_offset(
    path: Path, damage: bytes, reason: str, shift: int
) -> None:
    write_log(path, WHOLE)
    before = path.read_bytes()
    data = before + damage + encode([b"RPUSH", b"q", b"z"])
    path.write_bytes(data)
    records: list[Record] = []
    with pytest.raises(CorruptLog) as raised:
        records.extend(replay(str(path)))
    assert [(r.db, r.argv) for r in records] == WHOLE
    at = len(before) + shift
    assert raised.value.offset == at
    expected = reason.format(at=at, at4=at + 4, at12=at + 12)
    assert str(raised.value) == f"corrupt record at byte {at} of {path}: {expected}"
    assert path.read_bytes() == data  # left as it was, for a human to look at


@pytest.mark.parametrize("end", [b"*1\r\nX", b"*1\r\n$3\r\nabcd", b"*1x", b"\r"])
def test_a_last_record_that_no_write_could_begin_with_is_corrupt_not_torn(
    path: Path, end: bytes
) -> None:
    write_log(path, WHOLE)
    path.write_bytes(path.read_bytes() + end)
    with pytest.raises(CorruptLog):
        list(replay(str(path)))


@given(commands, st.data())
def test_any_cut_replays_as_the_whole_records_before_it(
    written: list[tuple[int, Argv]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mqd.aof"
        write_log(path, written)
        full = path.read_bytes()
        cut = data.draw(st.integers(0, len(full)))
        path.write_bytes(full[:cut])
        replayed = [(r.db, r.argv) for r in replay(str(path))]
        assert replayed == written[: len(replayed)]
        assert full.startswith(path.read_bytes())
        assert [(r.db, r.argv) for r in replay(str(path))] == replayed


# ---------------------------------------------------------------- commit


def test_always_writes_and_fsyncs_a_turn_of_writes_with_one_fsync(
    path: Path,
) -> None:
    log = AppendOnlyLog(str(path), fsync=Fsync.ALWAYS)
    for n in range(16):  # sixteen clients' writes in one loop turn
        log.append(0, [b"RPUSH", b"q", b"%d" % n])
    assert log.pending
    assert path.read_bytes() == b""  # nothing is written before commit
    log.commit()
    assert (log.pending, log.dirty, log.fsyncs, log.appended) == (False, False, 1, 16)
    assert len(list(replay(str(path)))) == 16
    log.commit()  # a turn without writes costs nothing
    assert log.fsyncs == 1
    log.append(0, [b"LPOP", b"q"])
    log.commit()
    assert log.fsyncs == 2
    log.close()
    assert log.fsyncs == 2  # nothing left to sync


@pytest.mark.parametrize("policy", [Fsync.EVERYSEC, Fsync.NO])
def test_everysec_and_no_write_at_commit_and_leave_the_fsync(
    path: Path, policy: Fsync
) -> None:
    log = AppendOnlyLog(str(path), fsync=policy)
    log.append(0, [b"RPUSH", b"q", b"a"])
    log.commit()
    assert len(list(replay(str(path)))) == 1  # in the file at once
    assert log.fsyncs == 0 or policy is Fsync.EVERYSEC  # its thread may have
    log.close()
    assert not log.dirty  # close syncs, whatever the policy


def test_everysec_syncs_in_its_own_thread_which_close_stops(path: Path) -> None:
    def threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == "mqd-aof-fsync"]

    log = AppendOnlyLog(str(path), fsync=Fsync.EVERYSEC)
    assert threads() == ["mqd-aof-fsync"]
    log.close()
    assert threads() == []
    log.close()  # twice is harmless


def test_fsync_from_another_thread_while_the_server_writes(path: Path) -> None:
    log = AppendOnlyLog(str(path), fsync=Fsync.NO)
    done = threading.Event()

    def sync() -> None:
        while not done.is_set():
            log.fsync()

    syncer = threading.Thread(target=sync)
    syncer.start()
    try:
        for n in range(2000):
            log.append(n % 3, [b"RPUSH", b"q", b"%d" % n])
            log.commit()
    finally:
        done.set()
        syncer.join()
    log.close()
    assert [r.argv[2] for r in replay(str(path))] == [b"%d" % n for n in range(2000)]


def test_a_failed_write_leaves_no_half_record_and_is_tried_again(
    path: Path,
) -> None:
    log = AppendOnlyLog(str(path), fsync=Fsync.NO)
    log.append(0, [b"RPUSH", b"q", b"a"])
    log.commit()
    size = log.size
    log.append(0, [b"RPUSH", b"q", b"b" * 1000])
    # A file size limit: the write stops part way, the next one fails, as
    # on a full disk.
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, limit[1]))
    try:
        with pytest.raises(OSError, match="too large"):
            log.commit()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, previous)
    assert isinstance(log.error, OSError)
    assert log.pending
    assert path.stat().st_size == size
    log.commit()
    assert log.error is None
    log.close()
    assert [r.argv[2] for r in replay(str(path))] == [b"a", b"b" * 1000]


# ---------------------------------------------------------------- rewrite


def wait_for_rewrite(log: AppendOnlyLog) -> bool:
    """Wait for the child on its pipe, as the server's loop would."""
    while True:
        fd = log.rewrite_fd
        assert fd is not None
        readable, _, _ = select.select([fd], [], [], 30)
        assert readable, "the rewrite took more than 30 s"
        done = log.poll_rewrite()
        if done is not None:
            return done


def churn(dbs: list[Database], log: AppendOnlyLog, rounds: int, tag: bytes) -> None:
    """Writes that leave little behind: pushes, pops, expiry times."""
    for n in range(rounds):
        db, key = n % 4, b"q%d" % (n % 10)
        for argv in [
            [b"RPUSH", key, tag + b"%d" % n, b"spare", b"spare"],
            [b"LPOP", key],
            [b"RPOP", key],
            [b"PEXPIREAT", key, b"%d" % (CLOCK + 1_000_000 + n)],
        ]:
            apply(dbs, db, argv)
            log.append(db, argv)
        if n % 16 == 0:
            log.commit()
    log.commit()


@pytest.mark.timeout(60)
def test_a_rewrite_keeps_the_writes_made_while_it_ran_and_shrinks_the_log(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dbs = databases()
    log = AppendOnlyLog(str(path), fsync=Fsync.ALWAYS, rewrite_min_size=4096)
    churn(dbs, log, 2000, b"before")
    assert log.rewrite_needed()
    before = log.size
    log.start_rewrite(lambda: rewrite_commands(dbs))
    assert not log.rewrite_needed()  # one at a time
    with pytest.raises(RuntimeError):
        log.start_rewrite(lambda: rewrite_commands(dbs))
    churn(dbs, log, 300, b"during")  # pushes the child must not see twice
    # Until the rewrite is done the old log has everything.
    assert contents(load(path)) == contents(dbs)
    with caplog.at_level(logging.INFO, logger="mqd.aof"):
        assert wait_for_rewrite(log) is True
    assert log.rewrite_fd is None
    assert not Path(str(path) + ".rewrite").exists()
    assert f"rewrote {path}" in caplog.text
    assert contents(load(path)) == contents(dbs)
    assert log.size == path.stat().st_size < before / 3
    assert not log.rewrite_needed()  # the new size is the new base
    churn(dbs, log, 100, b"after")
    log.close()
    assert contents(load(path)) == contents(dbs)
    assert path.read_bytes().startswith(encode([b"SELECT", b"0"]))


@pytest.mark.timeout(60)
def test_writes_buffered_at_the_fork_are_not_logged_twice(path: Path) -> None:
    dbs = databases()
    log = AppendOnlyLog(str(path), fsync=Fsync.NO)
    for n in range(50):
        apply(dbs, 3, [b"RPUSH", b"q", b"%d" % n])
        log.append(3, [b"RPUSH", b"q", b"%d" % n])
    log.start_rewrite(lambda: rewrite_commands(dbs))  # with all 50 unwritten
    apply(dbs, 3, [b"RPUSH", b"q", b"late"])
    log.append(3, [b"RPUSH", b"q", b"late"])
    assert wait_for_rewrite(log) is True
    log.close()
    assert contents(load(path)) == contents(dbs)


@pytest.mark.timeout(60)
def test_a_failed_rewrite_leaves_the_old_log_and_says_why(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dbs = databases()
    log = AppendOnlyLog(str(path), fsync=Fsync.ALWAYS)
    churn(dbs, log, 100, b"before")

    def broken() -> Iterator[tuple[int, Argv]]:
        yield 0, [b"RPUSH", b"q", b"half"]
        raise ValueError("the snapshot broke")

    log.start_rewrite(broken)
    churn(dbs, log, 20, b"during")
    data = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="mqd.aof"):
        assert wait_for_rewrite(log) is False
    assert "exit code 1" in caplog.text
    assert "ValueError('the snapshot broke')" in caplog.text
    assert path.read_bytes() == data
    assert not Path(str(path) + ".rewrite").exists()
    churn(dbs, log, 20, b"after")
    log.close()
    assert contents(load(path)) == contents(dbs)


@pytest.mark.timeout(60)
def test_closing_during_a_rewrite_stops_it_and_keeps_the_old_log(
    path: Path,
) -> None:
    dbs = databases()
    log = AppendOnlyLog(str(path), fsync=Fsync.NO)
    churn(dbs, log, 100, b"before")
    never, kept_open = os.pipe()

    def endless() -> Iterator[tuple[int, Argv]]:
        os.read(never, 1)  # the child holds the write end too: no EOF
        yield 0, [b"RPUSH", b"q", b"x"]

    log.start_rewrite(endless)
    churn(dbs, log, 10, b"during")
    log.close()
    os.close(never)
    os.close(kept_open)
    assert not Path(str(path) + ".rewrite").exists()
    assert contents(load(path)) == contents(dbs)


def test_a_rewrite_is_needed_once_the_log_doubles_past_the_minimum(
    path: Path,
) -> None:
    write_log(path, [(0, [b"RPUSH", b"q", b"x" * 100])] * 10)
    size = path.stat().st_size
    log = AppendOnlyLog(str(path), fsync=Fsync.NO, rewrite_min_size=3 * size)
    while log.size < 2 * size:
        log.append(0, [b"RPUSH", b"q", b"x" * 100])
        log.commit()
    assert not log.rewrite_needed()  # doubled, but under the minimum
    while log.size < 3 * size:
        log.append(0, [b"RPUSH", b"q", b"x" * 100])
        log.commit()
    assert log.rewrite_needed()
    log.close()


def test_a_rewrite_left_by_a_crash_is_removed_at_open(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stale = Path(str(path) + ".rewrite")
    stale.write_bytes(b"*1\r\n$4\r\nPI")
    with caplog.at_level(logging.INFO, logger="mqd.aof"):
        AppendOnlyLog(str(path), fsync=Fsync.NO).close()
    assert not stale.exists()
    assert "a rewrite that did not finish" in caplog.text


def test_rewrite_commands_rebuild_lists_64_items_at_a_time_with_deadlines() -> None:
    dbs = databases()
    dbs[2].create(b"long").extend(b"%d" % n for n in range(130))
    dbs[9].create(b"ttl").append(b"x")
    dbs[9].expires[b"ttl"] = CLOCK + 5
    written = list(rewrite_commands(dbs))
    assert [(db, argv[0], len(argv)) for db, argv in written] == [
        (2, b"RPUSH", 2 + 64),
        (2, b"RPUSH", 2 + 64),
        (2, b"RPUSH", 2 + 2),
        (9, b"RPUSH", 3),
        (9, b"PEXPIREAT", 3),
    ]
    rebuilt = databases()
    for db, argv in written:
        apply(rebuilt, db, argv)
    assert contents(rebuilt) == contents(dbs)
