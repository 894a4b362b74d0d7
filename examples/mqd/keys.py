"""Commands on keys and databases, with Redis's replies and error texts.

DEL, UNLINK, EXISTS, TYPE, KEYS, SCAN, RENAME; expiry (EXPIRE, PEXPIRE,
EXPIREAT, PEXPIREAT, TTL, PTTL, EXPIRETIME, PEXPIRETIME, PERSIST); DBSIZE,
FLUSHDB, FLUSHALL, SELECT, SWAPDB. The sources are Redis's src/db.c and
src/expire.c; :mod:`mqd.args` reads the arguments as Redis does.

SCAN's cursor is a position in hash order. Keys are visited by
``hash(key)`` as an unsigned 64-bit number, which is fixed for a key while
the process lives, and the cursor returned is one past the last position
visited; a batch always ends with every key of its last position (hash
collisions). So a key present for the whole scan is returned exactly once
however many keys come and go between calls, and a key added or deleted
meanwhile may or may not be, as Redis promises. SCAN 0 sorts the database's
keys by position (O(N log N), once per scan); the calls that follow find
their place in that order by bisection. The order may be older than the
data: what was deleted since is skipped, what was added since may be
missed, which only a scan begun before the addition may do, since each
SCAN 0 sorts afresh.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Iterable

from mqd.args import (
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    SYNTAX_ERROR,
    glob_match,
    parse_cursor,
    parse_long,
)
from mqd.keyspace import DATABASES
from mqd.replies import OK, Err, Reply, Simple
from mqd.table import Argv, Client, State, command

__all__: list[str] = []  # nothing to import: the commands register themselves

_LLONG_MIN_SECONDS = -(2**63 // 1000)  # LLONG_MIN / 1000: C truncates
OUT_OF_RANGE = Err(b"ERR DB index is out of range")


def _sanitized(text: bytes) -> bytes:
    """User bytes inside an error line: CR and LF would break the protocol,
    so Redis (addReplyErrorFormat) makes them spaces."""
    return text.replace(b"\r", b" ").replace(b"\n", b" ")


# ------------------------------------------------------------ keys


@command("del", arity=-2, flags="write", keys=(1, -1, 1))
def del_(client: Client, argv: Argv) -> Reply:
    """Delete keys; how many there were (expired ones do not count)."""
    return _delete(client, b"DEL", argv[1:])


@command("unlink", arity=-2, flags="write fast", keys=(1, -1, 1))
def unlink(client: Client, argv: Argv) -> Reply:
    """Delete keys, as DEL (memory is Python's to free either way)."""
    return _delete(client, b"UNLINK", argv[1:])


def _delete(client: Client, name: bytes, keys: Iterable[bytes]) -> int:
    db = client.db
    deleted = []
    for key in keys:
        # get() first: an expired key is gone already, and not counted.
        if db.get(key) is not None and db.delete(key):
            client.touch(key)
            deleted.append(key)
    if deleted:
        client.propagate([name, *deleted])
    return len(deleted)


@command("exists", arity=-2, flags="readonly fast", keys=(1, -1, 1))
def exists(client: Client, argv: Argv) -> Reply:
    """How many of the keys exist, a key named twice counting twice."""
    db = client.db
    return sum(db.get(key) is not None for key in argv[1:])


@command("type", arity=2, flags="readonly fast")
def type_(client: Client, argv: Argv) -> Reply:
    """The type of a key's value: list, or none (lists are all there is)."""
    return Simple(b"none" if client.db.get(argv[1]) is None else b"list")


@command("keys", arity=2, flags="readonly", keys=(0, 0, 0))
def keys(client: Client, argv: Argv) -> Reply:
    """Every key that matches a glob pattern."""
    pattern = argv[1]
    if pattern == b"*":  # Redis's shortcut, which also matches the key ""
        return list(client.db.keys())
    # Database.keys() is no dict's: it skips (and deletes) expired keys.
    return [key for key in client.db.keys() if glob_match(pattern, key)]  # noqa: SIM118


# Redis's type names: SCAN TYPE accepts each, and only "list" finds keys.
_TYPES = frozenset({b"string", b"list", b"set", b"zset", b"hash", b"stream"})
# SCAN 0 sorts a database's keys by position; the calls that follow reuse it.
_Order = list[tuple[int, bytes]]
_orders: weakref.WeakKeyDictionary[State, dict[int, _Order]] = (
    weakref.WeakKeyDictionary()
)
_POSITIONS = 2**64


@command("scan", arity=-2, flags="readonly", keys=(0, 0, 0))
def scan(client: Client, argv: Argv) -> Reply:
    """Iterate over the keys: [next cursor, keys]; cursor 0 starts and ends."""
    cursor = parse_cursor(argv[1])
    if cursor is None:
        return Err(b"ERR invalid cursor")
    count, pattern, want_list = 10, None, True
    i = 2
    while i < len(argv):
        option = argv[i].lower()
        more = i + 1 < len(argv)
        if option == b"count" and more:
            value = parse_long(argv[i + 1])
            if isinstance(value, Err):
                return value
            if value < 1:
                return SYNTAX_ERROR
            count = value
        elif option == b"match" and more:
            pattern = None if argv[i + 1] == b"*" else argv[i + 1]
        elif option == b"type" and more:
            name = argv[i + 1]
            if name.lower() not in _TYPES:
                return Err(b"ERR unknown type name '%s'" % _sanitized(name))
            want_list = name.lower() == b"list"
        elif option == b"novalues":
            return Err(b"ERR NOVALUES option can only be used in HSCAN")
        else:
            return SYNTAX_ERROR
        i += 2
    batch, cursor = _scan_batch(client, cursor, count)
    db = client.db
    found: list[Reply] = [
        key
        for key in batch
        if want_list
        and (pattern is None or glob_match(pattern, key))
        and db.get(key) is not None  # deleted or expired since
    ]
    return [b"%d" % cursor, found]


def _scan_batch(client: Client, cursor: int, count: int) -> tuple[list[bytes], int]:
    """About ``count`` keys from position ``cursor`` on, and the next cursor."""
    orders = _orders.setdefault(client.state, {})
    order = orders.get(client.db_index)
    if order is None or cursor == 0:
        mask = _POSITIONS - 1
        order = orders[client.db_index] = sorted(
            (hash(key) & mask, key) for key in client.db.lists
        )
    start = bisect.bisect_left(order, cursor, key=_position)
    end = min(start + count, len(order))
    # Keys of one position go together: the next cursor skips past them.
    while end < len(order) and order[end][0] == order[end - 1][0]:
        end += 1
    if end < len(order):
        cursor = order[end - 1][0] + 1
    else:
        cursor = 0
        del orders[client.db_index]  # a scan is over: free the order
    return [key for _, key in order[start:end]], cursor


def _position(entry: tuple[int, bytes]) -> int:
    return entry[0]


@command("rename", arity=3, flags="write", keys=(1, 2, 1))
def rename(client: Client, argv: Argv) -> Reply:
    """Rename a key, replacing the destination; the TTL goes with it."""
    source, target = argv[1], argv[2]
    db = client.db
    value = db.get(source)
    if value is None:
        return Err(b"ERR no such key")
    if source == target:
        return OK
    deadline = db.expires.get(source)
    db.delete(source)
    db.delete(target)
    db.lists[target] = value
    if deadline is not None:
        db.expires[target] = deadline
    client.touch(source)
    # A new list at ``target``: clients blocked on it may now be served.
    client.touch(target, pushed=True)
    client.propagate([b"RENAME", source, target])
    return OK


# ------------------------------------------------------------ expiry


def _expire(client: Client, argv: Argv, *, unit: int, relative: bool) -> Reply:
    """EXPIRE and its kin: set a key's deadline, or delete it if past."""
    key = argv[1]
    nx = xx = gt = lt = False
    for option in argv[3:]:
        word = option.lower()
        if word == b"nx":
            nx = True
        elif word == b"xx":
            xx = True
        elif word == b"gt":
            gt = True
        elif word == b"lt":
            lt = True
        else:
            return Err(b"ERR Unsupported option %s" % _sanitized(option))
    if nx and (xx or gt or lt):
        return Err(
            b"ERR NX and XX, GT or LT options at the same time are not compatible"
        )
    if gt and lt:
        return Err(b"ERR GT and LT options at the same time are not compatible")
    when = parse_long(argv[2])
    if isinstance(when, Err):
        return when
    now = client.state.milliseconds()
    base = now if relative else 0
    # Redis refuses what would overflow its signed 64-bit milliseconds.
    invalid = Err(b"ERR invalid expire time in '%s' command" % argv[0].lower())
    if unit == 1000 and not _LLONG_MIN_SECONDS <= when <= LONG_MAX // 1000:
        return invalid
    when *= unit
    if when > LONG_MAX - base:
        return invalid
    when += base
    db = client.db
    if db.get(key) is None:
        return 0
    current = db.expires.get(key)  # None: no deadline, "infinite"
    if (
        (nx and current is not None)
        or (xx and current is None)
        or (gt and (current is None or when <= current))
        or (lt and current is not None and when >= current)
    ):
        return 0
    client.touch(key)
    if when <= now:
        db.delete(key)
        client.propagate([b"DEL", key])
    else:
        db.expires[key] = when
        # Absolute: replaying the log later must give the same deadline.
        client.propagate([b"PEXPIREAT", key, b"%d" % when])
    return 1


@command("expire", arity=-3, flags="write fast")
def expire(client: Client, argv: Argv) -> Reply:
    """Set a key's time to live in seconds (NX, XX, GT, LT); 1 if set."""
    return _expire(client, argv, unit=1000, relative=True)


@command("pexpire", arity=-3, flags="write fast")
def pexpire(client: Client, argv: Argv) -> Reply:
    """Set a key's time to live in milliseconds (NX, XX, GT, LT); 1 if set."""
    return _expire(client, argv, unit=1, relative=True)


@command("expireat", arity=-3, flags="write fast")
def expireat(client: Client, argv: Argv) -> Reply:
    """Set a key's deadline, a Unix time in seconds; 1 if set."""
    return _expire(client, argv, unit=1000, relative=False)


@command("pexpireat", arity=-3, flags="write fast")
def pexpireat(client: Client, argv: Argv) -> Reply:
    """Set a key's deadline, a Unix time in milliseconds; 1 if set."""
    return _expire(client, argv, unit=1, relative=False)


def _ttl(client: Client, key: bytes, *, ms: bool, absolute: bool) -> int:
    db = client.db
    if db.get(key) is None:
        return -2
    deadline = db.expires.get(key)
    if deadline is None:
        return -1
    left = max(0, deadline if absolute else deadline - client.state.milliseconds())
    return left if ms else (left + 500) // 1000


@command("ttl", arity=2, flags="readonly fast")
def ttl(client: Client, argv: Argv) -> Reply:
    """Seconds a key has to live, rounded; -1 for ever, -2 no such key."""
    return _ttl(client, argv[1], ms=False, absolute=False)


@command("pttl", arity=2, flags="readonly fast")
def pttl(client: Client, argv: Argv) -> Reply:
    """Milliseconds a key has to live; -1 for ever, -2 no such key."""
    return _ttl(client, argv[1], ms=True, absolute=False)


@command("expiretime", arity=2, flags="readonly fast")
def expiretime(client: Client, argv: Argv) -> Reply:
    """A key's deadline as a Unix time in seconds; -1 none, -2 no such key."""
    return _ttl(client, argv[1], ms=False, absolute=True)


@command("pexpiretime", arity=2, flags="readonly fast")
def pexpiretime(client: Client, argv: Argv) -> Reply:
    """A key's deadline in Unix milliseconds; -1 none, -2 no such key."""
    return _ttl(client, argv[1], ms=True, absolute=True)


@command("persist", arity=2, flags="write fast")
def persist(client: Client, argv: Argv) -> Reply:
    """Remove a key's deadline; 1 if it had one."""
    key = argv[1]
    db = client.db
    if db.get(key) is None or db.expires.pop(key, None) is None:
        return 0
    client.touch(key)
    client.propagate([b"PERSIST", key])
    return 1


# ------------------------------------------------------------ databases


@command("dbsize", arity=1, flags="readonly fast", keys=(0, 0, 0))
def dbsize(client: Client, argv: Argv) -> Reply:
    """The number of keys in the database (expired ones not yet swept too)."""
    return len(client.db)


def _flush_mode(argv: Argv) -> Err | None:
    if len(argv) == 1 or (len(argv) == 2 and argv[1].lower() in (b"sync", b"async")):
        return None
    return SYNTAX_ERROR


@command("flushdb", arity=-1, flags="write", keys=(0, 0, 0))
def flushdb(client: Client, argv: Argv) -> Reply:
    """Delete every key of the database (SYNC or ASYNC: the same here)."""
    error = _flush_mode(argv)
    if error is not None:
        return error
    client.state.touch_db(client.db_index)
    client.db.clear()
    client.propagate([b"FLUSHDB"])
    return OK


@command("flushall", arity=-1, flags="write", keys=(0, 0, 0))
def flushall(client: Client, argv: Argv) -> Reply:
    """Delete every key of every database (SYNC or ASYNC: the same here)."""
    error = _flush_mode(argv)
    if error is not None:
        return error
    state = client.state
    for index, db in enumerate(state.dbs):
        state.touch_db(index)
        db.clear()
    client.propagate([b"FLUSHALL"])
    return OK


@command("select", arity=2, flags="loading fast", keys=(0, 0, 0))
def select(client: Client, argv: Argv) -> Reply:
    """Use database 0 to 15 on this connection (not logged: the log's
    writer notes the database of each command it is given)."""
    index = parse_long(argv[1], INT_MIN, INT_MAX)
    if isinstance(index, Err):
        return index
    if not 0 <= index < DATABASES:
        return OUT_OF_RANGE
    client.db_index = index
    return OK


@command("swapdb", arity=3, flags="write fast", keys=(0, 0, 0))
def swapdb(client: Client, argv: Argv) -> Reply:
    """Swap two databases' data: their clients see the other's keys."""
    first = parse_long(argv[1], INT_MIN, INT_MAX, b"invalid first DB index")
    if isinstance(first, Err):
        return first
    second = parse_long(argv[2], INT_MIN, INT_MAX, b"invalid second DB index")
    if isinstance(second, Err):
        return second
    if not (0 <= first < DATABASES and 0 <= second < DATABASES):
        return OUT_OF_RANGE
    if first == second:
        return OK
    state = client.state
    one, other = state.dbs[first], state.dbs[second]
    state.touch_db(first, other)
    state.touch_db(second, one)
    one.lists, other.lists = other.lists, one.lists
    one.expires, other.expires = other.expires, one.expires
    # A client blocked on a key that now holds a list may be served.
    for db, key in state.waiting:
        if (db == first and key in one.lists) or (db == second and key in other.lists):
            state.ready.add((db, key))
    client.propagate([b"SWAPDB", b"%d" % first, b"%d" % second])
    return OK
