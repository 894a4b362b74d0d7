"""Commands on keys and databases, with Redis's replies and error texts.

DEL, UNLINK, EXISTS, TYPE, KEYS, SCAN, RENAME; expiry (EXPIRE, PEXPIRE,
EXPIREAT, PEXPIREAT, TTL, PTTL, EXPIRETIME, PEXPIRETIME, PERSIST); DBSIZE,
FLUSHDB, FLUSHALL, SELECT, SWAPDB. The sources are Redis's src/db.c,
src/expire.c, src/util.c (:func:`glob_match`) and src/object.c
(:func:`parse_int`).

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
import re
import weakref
from collections.abc import Iterable

from mqd.keyspace import DATABASES, Database
from mqd.replies import OK, Err, Reply, Simple
from mqd.table import Argv, Client, State, command

__all__ = ["glob_match", "parse_int", "touch_replaced"]

# ------------------------------------------------------------ parsing

_LLONG_MAX = 2**63 - 1
_LLONG_MIN = -(2**63)
_LLONG_MIN_SECONDS = -(2**63 // 1000)  # LLONG_MIN / 1000: C truncates
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
# string2ll's grammar: no sign but "-", no leading zero, no spaces; fewer
# than LONG_STR_SIZE (21) bytes.
_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,19}")

NOT_INTEGER = Err(b"ERR value is not an integer or out of range")
SYNTAX = Err(b"ERR syntax error")
OUT_OF_RANGE = Err(b"ERR DB index is out of range")


def parse_int(arg: bytes) -> int | None:
    """``arg`` as a signed 64-bit integer, or None: Redis's string2ll."""
    if _INTEGER.fullmatch(arg) is None:
        return None
    value = int(arg)
    return value if _LLONG_MIN <= value <= _LLONG_MAX else None


def _parse_cursor(arg: bytes) -> int | None:
    """A SCAN cursor (unsigned 64 bits), or None: Redis's string2ull, which
    falls back on strtoull and so takes leading spaces, a sign, zeros."""
    value = parse_int(arg)
    if value is not None:
        return value if value >= 0 else None
    match = re.fullmatch(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)", arg)
    if match is None:
        return None
    value = int(match[2])
    if value >= 2**64:
        return None
    return (-value) % 2**64 if match[1] == b"-" else value  # strtoull negates


def _sanitized(text: bytes) -> bytes:
    """User bytes inside an error line: CR and LF would break the protocol,
    so Redis (addReplyErrorFormat) makes them spaces."""
    return text.replace(b"\r", b" ").replace(b"\n", b" ")


# ------------------------------------------------------------ glob

_STAR, _QUESTION, _OPEN, _CLOSE = b"*?[]"
_CARET, _DASH, _BACKSLASH = b"^-\\"
# stringmatchlen gives up (no match) past this many nested '*'.
_MAX_NESTING = 1000


def glob_match(pattern: bytes, string: bytes) -> bool:
    """Whether ``string`` matches ``pattern``: Redis's stringmatchlen.

    ``*`` any run, ``?`` any byte, ``[abc]``, ``[^a]``, ``[a-z]`` (either
    order), ``\\`` quotes the next byte. Redis's quirks are kept: an
    unclosed ``[`` ends the class; ``*`` does not match the empty string
    (KEYS and SCAN treat the pattern ``*`` apart); past 1000 nested stars
    nothing matches. In a range bytes compare unsigned, as in a Redis built
    where ``char`` is unsigned (ARM); on x86 Redis compares them signed, so
    ``[a-\\xff]`` differs there for bytes from 0x80 on.

    Redis recurses at each ``*`` but, once a star has tried every place,
    gives up (skipLongerMatches), so only the last star is ever retried:
    this loop does that without recursion.
    """
    plen, slen = len(pattern), len(string)
    p = s = depth = 0
    # The last star met: the pattern after it, the place it tries next.
    retry_p = retry_s = -1
    retry_depth = 0
    while True:
        matched = True
        while p < plen and s < slen:
            c = pattern[p]
            if c == _STAR:
                while p + 1 < plen and pattern[p + 1] == _STAR:
                    p += 1
                if p + 1 == plen:
                    return True
                if depth >= _MAX_NESTING:
                    return False
                depth += 1
                p += 1
                retry_p, retry_s, retry_depth = p, s, depth
                continue
            if c == _QUESTION:
                pass
            elif c == _OPEN:
                p, matched = _match_class(pattern, p + 1, string[s])
                if not matched:
                    break
            else:
                if c == _BACKSLASH and plen - p >= 2:
                    p += 1
                if pattern[p] != string[s]:
                    matched = False
                    break
            s += 1
            p += 1
            if s == slen:
                while p < plen and pattern[p] == _STAR:
                    p += 1
        if matched and p == plen and s == slen:
            return True
        # Retry the last star one byte further; when it has tried every
        # place, no longer match of an earlier star can help.
        if retry_p < 0 or retry_s + 1 >= slen:
            return False
        retry_s += 1
        p, s, depth = retry_p, retry_s, retry_depth


def _match_class(pattern: bytes, p: int, c: int) -> tuple[int, bool]:
    """Match byte ``c`` against the class that starts at ``p`` (after the
    ``[``): where the class ends (its ``]``) and whether ``c`` is in it."""
    plen = len(pattern)
    negate = p < plen and pattern[p] == _CARET
    if negate:
        p += 1
    found = False
    while True:
        if p + 1 < plen and pattern[p] == _BACKSLASH:
            p += 1
            found |= pattern[p] == c
        elif p < plen and pattern[p] == _CLOSE:
            break
        elif p >= plen:  # unclosed: the class ends with the pattern
            p -= 1
            break
        elif plen - p >= 3 and pattern[p + 1] == _DASH:
            low, high = sorted((pattern[p], pattern[p + 2]))
            p += 2
            found |= low <= c <= high
        else:
            found |= pattern[p] == c
        p += 1
    return p, found != negate


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
    cursor = _parse_cursor(argv[1])
    if cursor is None:
        return Err(b"ERR invalid cursor")
    count, pattern, want_list = 10, None, True
    i = 2
    while i < len(argv):
        option = argv[i].lower()
        more = i + 1 < len(argv)
        if option == b"count" and more:
            value = parse_int(argv[i + 1])
            if value is None:
                return NOT_INTEGER
            if value < 1:
                return SYNTAX
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
            return SYNTAX
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
    when = parse_int(argv[2])
    if when is None:
        return NOT_INTEGER
    now = client.state.milliseconds()
    base = now if relative else 0
    # Redis refuses what would overflow its signed 64-bit milliseconds.
    invalid = Err(b"ERR invalid expire time in '%s' command" % argv[0].lower())
    if unit == 1000 and not _LLONG_MIN_SECONDS <= when <= _LLONG_MAX // 1000:
        return invalid
    when *= unit
    if when > _LLONG_MAX - base:
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
    return SYNTAX


@command("flushdb", arity=-1, flags="write", keys=(0, 0, 0))
def flushdb(client: Client, argv: Argv) -> Reply:
    """Delete every key of the database (SYNC or ASYNC: the same here)."""
    error = _flush_mode(argv)
    if error is not None:
        return error
    touch_replaced(client.state, client.db_index, None)
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
        touch_replaced(state, index, None)
        db.clear()
    client.propagate([b"FLUSHALL"])
    return OK


def _db_index(arg: bytes, error: Err | None) -> int | Err:
    """getIntFromObjectOrReply: an int, or ``error`` (Redis's own if None)."""
    value = parse_int(arg)
    if value is None:
        return error or NOT_INTEGER
    if not _INT_MIN <= value <= _INT_MAX:
        return error or Err(
            b"ERR value is out of range, value must between %d and %d"
            % (_INT_MIN, _INT_MAX)
        )
    return value


@command("select", arity=2, flags="loading fast", keys=(0, 0, 0))
def select(client: Client, argv: Argv) -> Reply:
    """Use database 0 to 15 on this connection (not logged: the log's
    writer notes the database of each command it is given)."""
    index = _db_index(argv[1], None)
    if isinstance(index, Err):
        return index
    if not 0 <= index < DATABASES:
        return OUT_OF_RANGE
    client.db_index = index
    return OK


@command("swapdb", arity=3, flags="write fast", keys=(0, 0, 0))
def swapdb(client: Client, argv: Argv) -> Reply:
    """Swap two databases' data: their clients see the other's keys."""
    first = _db_index(argv[1], Err(b"ERR invalid first DB index"))
    if isinstance(first, Err):
        return first
    second = _db_index(argv[2], Err(b"ERR invalid second DB index"))
    if isinstance(second, Err):
        return second
    if not (0 <= first < DATABASES and 0 <= second < DATABASES):
        return OUT_OF_RANGE
    if first == second:
        return OK
    state = client.state
    one, other = state.dbs[first], state.dbs[second]
    touch_replaced(state, first, other)
    touch_replaced(state, second, one)
    one.lists, other.lists = other.lists, one.lists
    one.expires, other.expires = other.expires, one.expires
    # A client blocked on a key that now holds a list may be served. Which
    # keys have blocked clients is the server's to know: offer them all.
    state.ready.update((first, key) for key in one.lists)
    state.ready.update((second, key) for key in other.lists)
    client.propagate([b"SWAPDB", b"%d" % first, b"%d" % second])
    return OK


def touch_replaced(state: State, index: int, replaced_with: Database | None) -> None:
    """Database ``index`` is emptied (FLUSHDB) or gets ``replaced_with``'s
    data (SWAPDB): its watched keys that exist in either have changed, as
    Redis's touchAllWatchedKeysInDb decides (a key watched while missing or
    expired, and still missing, has not)."""
    emptied = state.dbs[index]
    for (db, key), clients in state.watchers.items():
        if db == index and (
            emptied.get(key) is not None
            or (replaced_with is not None and replaced_with.get(key) is not None)
        ):
            for client in clients:
                client.dirty = True
