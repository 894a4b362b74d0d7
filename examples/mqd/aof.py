"""The append-only log: every write, in RESP, in one file that Redis loads.

The file at ``--appendonly PATH`` is a sequence of commands, each a RESP
array of bulk strings (``*3\\r\\n$5\\r\\nRPUSH\\r\\n$1\\r\\nq\\r\\n$1\\r\\na\\r\\n``),
exactly what a client sends, so ``redis-cli --pipe < PATH`` loads it into
a real Redis: that is the way off this machine. When the database of a
write differs from the last one logged a ``SELECT n`` comes first, as in
Redis, and the first record of a file always selects. A transaction's
writes are logged between ``MULTI`` and ``EXEC`` records; replay applies
them only once their ``EXEC`` is read.

The server calls :meth:`AppendOnlyLog.append` for each write as it runs
(it only buffers), and :meth:`AppendOnlyLog.commit` at the end of each
loop turn in which writes happened, before that turn's replies are sent.
What ``commit`` promises depends on ``appendfsync``, as in Redis:

- ``always``: the turn's writes are written to the file and
  ``fdatasync``-ed before ``commit`` returns, so no reply to a write
  leaves before the write is on disk. A crash of the process or of the
  machine loses no acknowledged write. The writes of one turn, from every
  client, share one fsync (group commit): the more clients write at once,
  the more writes each fsync carries.
- ``everysec`` (the default): the turn's writes are written to the file
  (``write(2)``) before ``commit`` returns, and a background thread
  ``fdatasync``-s the file once a second. A crash of the process loses no
  acknowledged write; a crash of the machine (power, kernel) loses about
  the last second of writes (plus the time of an fsync on a slow disk).
- ``no``: the turn's writes are written to the file before ``commit``
  returns and never fsynced; the kernel puts them on disk when it
  chooses (on Linux within about 30 seconds by default). A crash of the
  process loses nothing acknowledged; a crash of the machine loses what
  the kernel had not written yet.

Whatever the policy, :meth:`AppendOnlyLog.close` writes and fsyncs what
is buffered.

At start the server replays the file with :func:`replay`. A last record
cut short (the process died in the middle of a write, or the machine with
the tail of the file not yet on disk) is dropped with a warning and the
file truncated to its last whole record, as Redis does with
``aof-load-truncated yes``; a transaction without its ``EXEC`` at the end
is dropped whole. A record that is not valid RESP anywhere else stops
start-up with :class:`CorruptLog`, naming the byte offset.

The log is rewritten in the background once it has grown to twice the
size of its last rewrite (and past ``rewrite_min_size``): a forked child
writes the commands that rebuild the data, from its copy-on-write
snapshot, to ``PATH.rewrite``, while the parent goes on logging every
write to the old file and to a rewrite buffer; when the child is done,
the parent appends the buffer to the new file, fsyncs it and renames it
over ``PATH``. A crash at any point leaves one complete log at ``PATH``,
the old one or the new one.
"""

from __future__ import annotations

import enum
import logging
import mmap
import os
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import NamedTuple, NoReturn

from mqd.keyspace import DATABASES, Database

__all__ = [
    "REWRITE_MIN_SIZE",
    "AppendOnlyLog",
    "CorruptLog",
    "Fsync",
    "Record",
    "replay",
    "rewrite_commands",
]

logger = logging.getLogger("mqd.aof")

Argv = list[bytes]

#: Redis's auto-aof-rewrite-min-size: a smaller log is never rewritten.
REWRITE_MIN_SIZE = 64 * 1024 * 1024

# Redis's AOF_REWRITE_ITEMS_PER_CMD: a long list is rebuilt 64 items to an
# RPUSH, so that no record of a rewritten log is huge.
_ITEMS_PER_COMMAND = 64

# The child writes its log in pieces of this size: big enough that system
# calls cost nothing next to the encoding, small enough to hold in memory.
_WRITE_SIZE = 1024 * 1024

# How much of a failed child's error reaches the parent: less than a
# pipe's capacity, so that the child never blocks writing it.
_REPORT_SIZE = 4096

# Redis's own limits on what a client may send (proto-max-bulk-len, and a
# count of arguments far beyond any command mqd logs): a length past them
# is damage, not a record.
_MAX_BULK = 512 * 1024 * 1024
_MAX_ARGS = 1024 * 1024
# Longer than any header line those limits allow ("*1048576\r\n").
_LINE_MAX = 32

# Redis syncs the log with fdatasync on Linux: the data and the size, not
# the times.
_datasync = os.fdatasync if sys.platform == "linux" else os.fsync


class Fsync(enum.Enum):
    """When the log is fsynced: Redis's ``appendfsync`` values."""

    ALWAYS = "always"
    EVERYSEC = "everysec"
    NO = "no"


class Record(NamedTuple):
    """One logged write: its database, its command, and where it starts."""

    db: int
    argv: Argv
    offset: int


class CorruptLog(Exception):
    """The log holds something that is not a record: start-up must stop.

    The server raises it too for a record it cannot apply (an unknown
    command), with the record's offset.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"corrupt record at byte {offset} of {path}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


# ---------------------------------------------------------------- writing


def encode(argv: Argv) -> bytes:
    """``argv`` as a RESP array of bulk strings, as a client sends it."""
    return b"*%d\r\n" % len(argv) + b"".join(
        [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in argv]
    )


def _select(db: int) -> bytes:
    return encode([b"SELECT", b"%d" % db])


def rewrite_commands(dbs: Sequence[Database]) -> Iterator[tuple[int, Argv]]:
    """The commands that rebuild ``dbs``: RPUSHes, then PEXPIREAT, per key.

    What :meth:`AppendOnlyLog.start_rewrite` wants, as
    ``lambda: rewrite_commands(state.dbs)``. Keys that have expired are
    written with their deadline, as Redis 7 does: replay deletes them.
    """
    for index, db in enumerate(dbs):
        for key, items in db.lists.items():
            values = list(items)
            for start in range(0, len(values), _ITEMS_PER_COMMAND):
                chunk = values[start : start + _ITEMS_PER_COMMAND]
                yield index, [b"RPUSH", key, *chunk]
            deadline = db.expires.get(key)
            if deadline is not None:
                yield index, [b"PEXPIREAT", key, b"%d" % deadline]


class _Rewrite:
    """A rewrite under way: the child, its file, and the writes since fork."""

    __slots__ = ("buffer", "fd", "pid", "report", "selected", "temp")

    def __init__(self, pid: int, temp: str, fd: int, report: int) -> None:
        self.pid = pid
        self.temp = temp
        self.fd = fd  # the new file, opened O_APPEND: the parent adds to it
        self.report = report  # a pipe: the child's error, if it fails
        self.buffer = bytearray()
        self.selected = -1  # the child's file selects whatever it ends with


class AppendOnlyLog:
    """The log at ``path``, opened for appending (replay it first).

    ``fsync`` is the policy (see the module's docstring); with
    ``everysec`` the log starts a daemon thread that fsyncs once a second,
    as Redis's background I/O thread does, and :meth:`close` stops it.
    Every other method is called from one thread, the server's.

    A write or fsync that fails raises ``OSError`` and is kept in
    :attr:`error` (the background thread's failures land only there); the
    buffered writes are kept, so the next :meth:`commit` tries again.
    While ``error`` is set Redis refuses writes with ``MISCONF Errors
    writing to the AOF file: ...``; with ``always`` the server must not
    send the turn's replies at all (Redis exits).
    """

    def __init__(
        self,
        path: str,
        *,
        fsync: Fsync = Fsync.EVERYSEC,
        rewrite_min_size: int = REWRITE_MIN_SIZE,
    ) -> None:
        self.path = path
        self.policy = fsync
        self.rewrite_min_size = rewrite_min_size
        created = not os.path.exists(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:  # else a crash could forget the file with its writes
            _sync_directory(path)
        self.size = os.fstat(self._fd).st_size  # bytes in the file
        self._base_size = self.size  # its size after the last rewrite
        self._buffer = bytearray()  # appended, not yet written
        self._selected = -1  # no SELECT logged yet in this run
        self._unsynced = False  # written, not yet fsynced
        self._rewrite: _Rewrite | None = None
        self.error: OSError | None = None
        self.appended = 0  # commands appended: appended / fsyncs is the
        self.fsyncs = 0  # number of writes one fsync carries
        # The fsync thread and the server meet here: the thread fsyncs the
        # file under it, the server swaps or closes the file under it.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _remove_stale(path + ".rewrite")
        if fsync is Fsync.EVERYSEC:
            self._thread = threading.Thread(
                target=self._sync_every_second, name="mqd-aof-fsync", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------ the log

    def append(self, db: int, argv: Argv) -> None:
        """Log ``argv``, run against database ``db``. Buffers only."""
        record = encode(argv)
        if db != self._selected:
            self._buffer += _select(db)
            self._selected = db
        self._buffer += record
        self.appended += 1
        rewrite = self._rewrite
        if rewrite is not None:
            if db != rewrite.selected:
                rewrite.buffer += _select(db)
                rewrite.selected = db
            rewrite.buffer += record

    @property
    def pending(self) -> bool:
        """Whether writes are appended but not yet written to the file."""
        return bool(self._buffer)

    @property
    def dirty(self) -> bool:
        """Whether writes are in the file but not yet fsynced."""
        return self._unsynced

    def flush(self) -> None:
        """Write what is buffered to the file, in one ``write(2)``."""
        buffer = self._buffer
        if not buffer:
            return
        written = 0
        try:
            while written < len(buffer):
                # os.write takes the bytearray as it is; only a short
                # write (a full disk, a signal) copies the rest.
                written += os.write(
                    self._fd, buffer if not written else buffer[written:]
                )
        except OSError as error:
            self.error = error
            if written:  # cut the half record off, as Redis does
                os.ftruncate(self._fd, self.size)
            raise
        self.size += written
        buffer.clear()
        self._unsynced = True
        self.error = None

    def fsync(self) -> None:
        """``fdatasync`` the file if anything written is not yet synced."""
        with self._lock:
            if not self._unsynced:
                return
            self._unsynced = False
            try:
                _datasync(self._fd)
            except OSError as error:
                self._unsynced = True
                self.error = error
                raise
            self.fsyncs += 1

    def commit(self) -> None:
        """End of a loop turn: make its writes as durable as the policy says.

        ``always``: written and fsynced (one fsync for the whole turn);
        ``everysec`` and ``no``: written. Call it before the turn's replies
        are sent.
        """
        self.flush()
        if self.policy is Fsync.ALWAYS:
            self.fsync()

    def _sync_every_second(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.fsync()
            except OSError as error:
                logger.error("fsync of %s failed: %s", self.path, error)

    def close(self) -> None:
        """Stop a rewrite under way, write and fsync the log, close it."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._rewrite is not None:
            os.kill(self._rewrite.pid, signal.SIGKILL)
            os.waitpid(self._rewrite.pid, 0)
            os.close(self._rewrite.report)
            self._abandon(self._rewrite)
            self._rewrite = None
        if self._fd < 0:
            return
        try:
            self.flush()
            self.fsync()
        finally:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------ rewrite

    @property
    def rewrite_fd(self) -> int | None:
        """While a rewrite is under way, a pipe that turns readable when
        its child exits (or reports an error, just before): the server may
        watch it with ``loop.add_reader`` and call :meth:`poll_rewrite`."""
        return None if self._rewrite is None else self._rewrite.report

    def rewrite_needed(self) -> bool:
        """Whether the log has doubled since its last rewrite (Redis's
        ``auto-aof-rewrite-percentage 100``) and is past the minimum size."""
        return (
            self._rewrite is None
            and self.size >= self.rewrite_min_size
            and self.size >= 2 * max(self._base_size, 1)
        )

    def start_rewrite(self, commands: Callable[[], Iterable[tuple[int, Argv]]]) -> None:
        """Fork a child that writes ``commands()`` as the new log.

        Call it between commands, never in the middle of a transaction
        being logged: the child's snapshot must be the effect of exactly
        the writes appended so far. ``commands`` runs in the child only.
        """
        if self._rewrite is not None:
            raise RuntimeError("a rewrite of the log is already under way")
        temp = self.path + ".rewrite"
        fd = os.open(temp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        report, child_report = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for descriptor in (fd, report, child_report):
                os.close(descriptor)
            os.unlink(temp)
            raise
        if pid == 0:
            os.close(report)
            _write_log(fd, child_report, commands)
        os.close(child_report)
        self._rewrite = _Rewrite(pid, temp, fd, report)
        logger.info("rewriting %s in the background (child %d)", self.path, pid)

    def poll_rewrite(self) -> bool | None:
        """Finish a rewrite whose child has exited; never blocks on the child.

        True: the new log is in place. False: the rewrite failed (logged),
        the old log goes on. None: no rewrite ended. On success this
        blocks for one write and one fsync of the writes made during the
        rewrite.
        """
        rewrite = self._rewrite
        if rewrite is None:
            return None
        try:
            pid, status = os.waitpid(rewrite.pid, os.WNOHANG)
        except ChildProcessError:  # someone else reaped it: its fate is unknown
            pid, status = rewrite.pid, -1
        if pid == 0:
            return None
        self._rewrite = None
        why = os.read(rewrite.report, _REPORT_SIZE).decode(errors="replace")
        os.close(rewrite.report)
        if status != 0:
            logger.error(
                "the rewrite of %s failed (child %d, %s): %s",
                self.path,
                rewrite.pid,
                _fate(status),
                why or "no error reported",
            )
            self._abandon(rewrite)
            return False
        try:
            _write_all(rewrite.fd, rewrite.buffer)
            os.fsync(rewrite.fd)
            os.replace(rewrite.temp, self.path)
        except OSError as error:
            logger.error("the rewrite of %s failed: %s", self.path, error)
            self._abandon(rewrite)
            return False
        self._install(rewrite)
        return True

    def _install(self, rewrite: _Rewrite) -> None:
        with self._lock:
            old, self._fd = self._fd, rewrite.fd
            self._unsynced = False
        os.close(old)
        # The records buffered for the old file are in the rewrite buffer,
        # written above, or in the child's snapshot: none is lost.
        self._buffer.clear()
        self._selected = rewrite.selected
        self.size = self._base_size = os.fstat(self._fd).st_size
        try:
            _sync_directory(self.path)
        except OSError as error:  # the rename may not survive a crash: the
            # old log would come back, which is complete
            logger.warning("fsync of the directory of %s failed: %s", self.path, error)
        logger.info("rewrote %s: %d bytes", self.path, self.size)

    def _abandon(self, rewrite: _Rewrite) -> None:
        os.close(rewrite.fd)
        _remove_stale(rewrite.temp)


def _write_log(
    fd: int, report: int, commands: Callable[[], Iterable[tuple[int, Argv]]]
) -> NoReturn:
    """The child: write ``commands()`` to ``fd``, fsync, exit 0 (or 1)."""
    code = 1
    try:
        # The parent's signal handlers are not the child's: a signal here
        # must not wake the parent's loop through a shared wake-up fd.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        buffer = bytearray()
        selected = -1
        for db, argv in commands():
            if db != selected:
                buffer += _select(db)
                selected = db
            buffer += encode(argv)
            if len(buffer) >= _WRITE_SIZE:
                _write_all(fd, buffer)
                buffer.clear()
        _write_all(fd, buffer)
        os.fsync(fd)
        code = 0
    except BaseException as error:  # whatever it is, the parent must hear
        os.write(report, repr(error).encode()[:_REPORT_SIZE])
    finally:
        os._exit(code)  # never back into the parent's code


def _write_all(fd: int, data: bytes | bytearray) -> None:
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])


def _fate(status: int) -> str:
    if status < 0:
        return "reaped elsewhere"
    code = os.waitstatus_to_exitcode(status)
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _sync_directory(path: str) -> None:
    """fsync the directory of ``path``: a new name survives a crash."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(temp: str) -> None:
    try:
        os.unlink(temp)
    except FileNotFoundError:
        return
    logger.info("removed %s, a rewrite that did not finish", temp)


# ---------------------------------------------------------------- replay


def replay(path: str) -> Iterator[Record]:
    """The writes logged at ``path``, in order; nothing if there is no file.

    ``SELECT`` records set the database of the records after them and
    are not yielded; a transaction's records are yielded once its
    ``EXEC`` is read, without the ``MULTI`` and ``EXEC``. When the
    iteration ends, a torn tail has been cut off the file (logged as a
    warning on ``mqd.aof``); :class:`CorruptLog` is raised at the first
    record that is damaged and not the last.

    A tail is torn when its last record is cut short, possibly followed
    by NUL bytes only (what some file systems leave of a block being
    written when the machine stops), or when it ends inside a
    transaction.
    """
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError:
        return
    with file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            torn = yield from _records(data, path)
    if torn is not None:
        valid, what = torn
        logger.warning(
            "%s: %s at byte %d; dropped its %d bytes, truncating to %d",
            path,
            what,
            valid,
            size - valid,
            valid,
        )
        os.truncate(path, valid)


class _Malformed(Exception):
    """Bytes that no record starts with: ``reason``, at byte ``at``."""

    def __init__(self, at: int, reason: str) -> None:
        super().__init__(reason)
        self.at = at
        self.reason = reason


def _records(
    data: mmap.mmap, path: str
) -> Generator[Record, None, tuple[int, str] | None]:
    """Yield the records of ``data``; return the torn tail, if there is one:
    where the last whole record ends, and what was cut short."""
    db, pos, size = 0, 0, len(data)
    block: list[Record] | None = None  # a transaction's records, until EXEC
    began = 0  # where its MULTI starts
    while pos < size:
        try:
            parsed = _parse(data, pos)
        except _Malformed as bad:
            if not _zeros(data, bad.at):
                raise CorruptLog(path, pos, f"{bad.reason} at byte {bad.at}") from None
            parsed = None
        if parsed is None:
            if block is not None:
                return began, "a transaction cut short"
            return pos, "a record cut short"
        argv, end = parsed
        name = argv[0].upper()
        if name == b"SELECT":
            db = _database(argv, path, pos)
        elif name == b"MULTI":
            if block is not None:
                raise CorruptLog(path, pos, "MULTI inside a transaction")
            block, began = [], pos
        elif name == b"EXEC":
            if block is None:
                raise CorruptLog(path, pos, "EXEC without MULTI")
            yield from block
            block = None
        elif block is not None:
            block.append(Record(db, argv, pos))
        else:
            yield Record(db, argv, pos)
        pos = end
    if block is not None:
        return began, "a transaction without its EXEC"
    return None


def _database(argv: Argv, path: str, offset: int) -> int:
    if len(argv) == 2 and argv[1].isdigit() and int(argv[1]) < DATABASES:
        return int(argv[1])
    raise CorruptLog(path, offset, f"bad SELECT {argv[1:]!r}")


def _parse(data: mmap.mmap, pos: int) -> tuple[Argv, int] | None:
    """The command at ``pos`` and where it ends; None if the data ends
    before it does. Raises :class:`_Malformed` at the first wrong byte."""
    header = _length(data, pos, b"*")
    if header is None:
        return None
    count, after = header
    if not 0 < count <= _MAX_ARGS:
        raise _Malformed(pos, f"a command of {count} arguments")
    pos = after
    argv: Argv = []
    for _ in range(count):
        bulk = _length(data, pos, b"$")
        if bulk is None:
            return None
        length, after = bulk
        if length > _MAX_BULK:
            raise _Malformed(pos, f"a bulk string of {length} bytes")
        end = after + length
        crlf = data[end : end + 2]
        if crlf != b"\r\n"[: len(crlf)]:
            raise _Malformed(end, "no CRLF after a bulk string")
        if len(crlf) < 2:
            return None
        argv.append(data[after:end])
        pos = end + 2
    return argv, pos


def _length(data: mmap.mmap, pos: int, kind: bytes) -> tuple[int, int] | None:
    """The length on the line at ``pos``, which starts with ``kind``
    (``*3``, ``$5``), and where the line ends; None if the data ends first."""
    line = data[pos : pos + _LINE_MAX]
    end = line.find(b"\r\n")
    if end >= 0:
        if line[:1] == kind and line[1:end].isdigit():
            return int(line[1:end]), pos + end + 2
        raise _Malformed(pos, f"{line[:end]!r} where {kind!r} and a length belong")
    if len(line) == _LINE_MAX:
        raise _Malformed(pos, "a line too long")
    # The data ends inside the line: what there is must be how one begins.
    if not line:
        return None
    rest = line[1:]
    digits = rest.removesuffix(b"\r")
    if line[:1] != kind or not (rest == b"" or digits.isdigit()):
        raise _Malformed(pos, f"{line!r} where {kind!r} and a length belong")
    return None


def _zeros(data: mmap.mmap, start: int) -> bool:
    """Whether ``data`` holds only NUL bytes from ``start`` on."""
    for at in range(start, len(data), _WRITE_SIZE):
        chunk = data[at : at + _WRITE_SIZE]
        if chunk.count(0) != len(chunk):
            return False
    return True
