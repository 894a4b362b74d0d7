"""The list commands: queues with pushes, pops, ranges and blocking pops.

Each command follows Redis's ``src/t_list.c``: the same order of checks
(so the same error wins when several apply), the same replies and error
texts. A list that empties is deleted. A write touches its keys and logs
its effect; a no-op (LPOP of a missing key, LREM that matched nothing)
logs nothing, as Redis propagates only what changed data.

A blocking command that finds nothing returns a :class:`Block` whose
``retry`` is the very attempt that just failed: the server calls it when
a key was pushed to, and it does, touches and logs exactly what the
non-blocking form would (BLPOP served is logged as ``LPOP key``, BLMOVE as
``LMOVE``, BLMPOP as ``LPOP key n``), as Redis 7 re-runs the command.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from mqd.args import LONG_MAX, SYNTAX_ERROR, parse_count, parse_long, parse_timeout
from mqd.keyspace import List
from mqd.replies import NULL_ARRAY, OK, Err, Reply
from mqd.table import Argv, Block, Client, command, wrong_arity

__all__: list[str] = []  # nothing to import: the commands register themselves

RANK_ZERO = Err(
    b"ERR RANK can't be zero: use 1 to start from the first match, "
    b"2 from the second ... or use negative to start from the end of the list"
)

# ------------------------------------------------------------ arguments


def _left(arg: bytes) -> bool | Err:
    """LEFT or RIGHT, in any case: whether it is LEFT."""
    word = arg.lower()
    if word == b"left":
        return True
    return False if word == b"right" else SYNTAX_ERROR


def _span(start: int, end: int, length: int) -> range:
    """The indexes from ``start`` to ``end`` inclusive, negative from the
    end, clipped to the list (addListRangeReply); empty if none."""
    if start < 0:
        start += length
    if end < 0:
        end += length
    start = max(start, 0)
    if start > end:  # a stop below the start, maybe negative: none
        return range(0)
    return range(start, min(end, length - 1) + 1)


# ------------------------------------------------------------ effects


def _pop(
    client: Client, key: bytes, value: List, left: bool, count: int
) -> list[Reply]:
    """Take up to ``count`` elements from one end of ``key``'s list, in the
    order they come off; delete the key if it empties."""
    take = value.popleft if left else value.pop
    popped: list[Reply] = [take() for _ in range(min(count, len(value)))]
    client.db.drop_if_empty(key, value)
    client.touch(key)
    return popped


def _push(client: Client, argv: Argv, value: List, left: bool) -> int:
    """Push ``argv[2:]`` one by one, so LPUSH k a b leaves b first."""
    if left:
        value.extendleft(argv[2:])
    else:
        value.extend(argv[2:])
    client.touch(argv[1], pushed=True)
    client.propagate(argv)
    return len(value)


def _move(
    client: Client, source: bytes, destination: bytes, left_from: bool, left_to: bool
) -> bytes | None:
    """Pop from ``source``, push to ``destination`` (which may be the same
    key: a rotation); the element, or None if ``source`` has none."""
    db = client.db
    value = db.get(source)
    if value is None:
        return None
    element = value.popleft() if left_from else value.pop()
    # After the pop: were source and destination the same one-element
    # list, the emptied list is still there to push back into.
    target = db.create(destination)
    if left_to:
        target.appendleft(element)
    else:
        target.append(element)
    db.drop_if_empty(source, value)
    client.touch(destination, pushed=True)
    client.touch(source)
    return element


def _wait(
    keys: Iterable[bytes],
    timeout: float,
    attempt: Callable[[], Reply | None],
    *,
    moves: bool = False,
) -> Reply | Block:
    """Try now; if nothing is there, block on ``keys`` with the same try.

    Each key once, as Redis's blockForKeys() skips repeats (BLPOP k k 0).
    On timeout the null array, which Redis gives every blocked list command
    (replyToBlockedClientTimedOut() in src/blocked.c), BLMOVE's too: ``*-1``
    in RESP2. Inside MULTI, where no client blocks, the pops give the null
    array too, but BLMOVE and BRPOPLPUSH (``moves``) give the null bulk
    string, ``$-1`` (addReplyNull in blmoveGenericCommand, src/t_list.c).
    """
    reply = attempt()
    if reply is not None:
        return reply
    once = list(dict.fromkeys(keys))
    if moves:
        return Block(once, timeout, attempt, NULL_ARRAY, denied_reply=None)
    return Block(once, timeout, attempt, NULL_ARRAY)


# ------------------------------------------------------------ pushes


@command("lpush", arity=-3, flags="write fast")
def lpush(client: Client, argv: Argv) -> Reply:
    """Prepends one or more elements to a list; the new length."""
    return _push(client, argv, client.db.create(argv[1]), left=True)


@command("rpush", arity=-3, flags="write fast")
def rpush(client: Client, argv: Argv) -> Reply:
    """Appends one or more elements to a list; the new length."""
    return _push(client, argv, client.db.create(argv[1]), left=False)


@command("lpushx", arity=-3, flags="write fast")
def lpushx(client: Client, argv: Argv) -> Reply:
    """Prepends elements to a list only when the list exists; 0 if not."""
    value = client.db.get(argv[1])
    return 0 if value is None else _push(client, argv, value, left=True)


@command("rpushx", arity=-3, flags="write fast")
def rpushx(client: Client, argv: Argv) -> Reply:
    """Appends elements to a list only when the list exists; 0 if not."""
    value = client.db.get(argv[1])
    return 0 if value is None else _push(client, argv, value, left=False)


@command("linsert", arity=5, flags="write")
def linsert(client: Client, argv: Argv) -> Reply:
    """Inserts an element before or after another element in a list.

    The new length; 0 if there is no list, -1 if the pivot is not in it.
    """
    where = argv[2].lower()
    if where not in (b"before", b"after"):
        return SYNTAX_ERROR
    value = client.db.get(argv[1])
    if value is None:
        return 0
    try:
        index = value.index(argv[3])  # the first match from the head
    except ValueError:
        return -1
    value.insert(index if where == b"before" else index + 1, argv[4])
    client.touch(argv[1], pushed=True)
    client.propagate(argv)
    return len(value)


# ------------------------------------------------------------ reads


@command("llen", arity=2, flags="readonly fast")
def llen(client: Client, argv: Argv) -> Reply:
    """Returns the length of a list; 0 if there is none."""
    value = client.db.get(argv[1])
    return 0 if value is None else len(value)


@command("lindex", arity=3, flags="readonly")
def lindex(client: Client, argv: Argv) -> Reply:
    """Returns an element from a list by its index (negative from the end).

    Null if out of range or no list; the key is looked at before the index
    is parsed, as in Redis, so a missing key with index "x" is null.
    """
    value = client.db.get(argv[1])
    if value is None:
        return None
    index = parse_long(argv[2])
    if isinstance(index, Err):
        return index
    return value[index] if -len(value) <= index < len(value) else None


@command("lrange", arity=4, flags="readonly")
def lrange(client: Client, argv: Argv) -> Reply:
    """Returns a range of elements from a list, both ends inclusive."""
    start, end = parse_long(argv[2]), parse_long(argv[3])
    if isinstance(start, Err):
        return start
    if isinstance(end, Err):
        return end
    value = client.db.get(argv[1])
    if value is None:
        return []
    span = _span(start, end, len(value))
    elements: list[Reply] = list(itertools.islice(value, span.start, span.stop))
    return elements


@command("lpos", arity=-3, flags="readonly")
def lpos(client: Client, argv: Argv) -> Reply:
    """Returns the index of matching elements in a list.

    RANK n: from the n-th match (negative: searching from the tail);
    COUNT n: an array of up to n indexes (0: all); MAXLEN n: look at n
    elements at most (0: all). Null, or an empty array with COUNT, if none.
    """
    # COUNT -1: not given (a single index, not an array); later ones win.
    settings = {b"rank": 1, b"count": -1, b"maxlen": 0}
    options = iter(argv[3:])
    for option in options:
        name, arg = option.lower(), next(options, None)
        if arg is None or name not in settings:
            return SYNTAX_ERROR
        if name == b"rank":
            parsed = parse_long(arg, -LONG_MAX, LONG_MAX)
            if parsed == 0:
                return RANK_ZERO
        else:  # "COUNT can't be negative", even for "abc", as in Redis
            parsed = parse_count(arg, b"%s can't be negative" % name.upper())
        if isinstance(parsed, Err):
            return parsed
        settings[name] = parsed
    rank, count, maxlen = settings[b"rank"], settings[b"count"], settings[b"maxlen"]
    value = client.db.get(argv[1])
    if value is None:
        return None if count == -1 else []
    found = _positions(value, argv[2], rank, count, maxlen)
    if count != -1:
        return found
    return found[0] if found else None


def _positions(
    value: List, element: bytes, rank: int, count: int, maxlen: int
) -> list[Reply]:
    """LPOS's search: the indexes (from the head) of matches, from the
    ``rank``-th on, at most ``count`` (0: all; -1: just one)."""
    length = len(value)
    items: Iterable[bytes] = value if rank > 0 else reversed(value)
    if maxlen:
        items = itertools.islice(items, maxlen)
    skip = abs(rank) - 1
    found: list[Reply] = []
    for index, item in enumerate(items):
        if item != element:
            continue
        if skip:
            skip -= 1
            continue
        found.append(index if rank > 0 else length - 1 - index)
        if count != 0 and len(found) >= max(count, 1):
            break
    return found


# ------------------------------------------------------------ changes


@command("lset", arity=4, flags="write")
def lset(client: Client, argv: Argv) -> Reply:
    """Sets the value of an element in a list by its index."""
    value = client.db.get(argv[1])
    if value is None:
        return Err(b"ERR no such key")
    index = parse_long(argv[2])
    if isinstance(index, Err):
        return index
    if not -len(value) <= index < len(value):
        return Err(b"ERR index out of range")
    value[index] = argv[3]
    client.touch(argv[1])
    client.propagate(argv)
    return OK


@command("lrem", arity=4, flags="write")
def lrem(client: Client, argv: Argv) -> Reply:
    """Removes elements from a list; how many.

    count > 0: the first count matches from the head; < 0: from the tail;
    0: all of them.
    """
    count = parse_long(argv[2], -LONG_MAX, LONG_MAX)
    if isinstance(count, Err):
        return count
    key, element = argv[1], argv[3]
    value = client.db.get(key)
    if value is None:
        return 0
    limit = abs(count) or len(value)
    items = list(value) if count >= 0 else list(reversed(value))
    kept, removed = [], 0
    for item in items:
        if item == element and removed < limit:
            removed += 1
        else:
            kept.append(item)
    if removed:
        if count < 0:
            kept.reverse()
        value.clear()
        value.extend(kept)
        client.db.drop_if_empty(key, value)
        client.touch(key)
        client.propagate(argv)
    return removed


@command("ltrim", arity=4, flags="write")
def ltrim(client: Client, argv: Argv) -> Reply:
    """Removes elements from both ends a list, keeping start to stop."""
    start, end = parse_long(argv[2]), parse_long(argv[3])
    if isinstance(start, Err):
        return start
    if isinstance(end, Err):
        return end
    key = argv[1]
    value = client.db.get(key)
    if value is None:
        return OK
    length = len(value)
    span = _span(start, end, length)
    head, tail = (span.start, length - span.stop) if span else (length, 0)
    for _ in range(head):
        value.popleft()
    for _ in range(tail):
        value.pop()
    client.db.drop_if_empty(key, value)
    client.touch(key)  # Redis signals even when nothing went
    if head or tail:
        client.propagate(argv)
    return OK


# ------------------------------------------------------------ pops


def _pop_command(client: Client, argv: Argv, left: bool) -> Reply:
    """LPOP/RPOP key [count]: an element, or an array with a count."""
    if len(argv) > 3:
        return wrong_arity("lpop" if left else "rpop")
    count = parse_count(argv[2]) if len(argv) == 3 else None
    if isinstance(count, Err):
        return count
    key = argv[1]
    value = client.db.get(key)
    if value is None:
        return None if count is None else NULL_ARRAY
    if count == 0:
        return []
    popped = _pop(client, key, value, left, 1 if count is None else count)
    client.propagate(argv)
    return popped[0] if count is None else popped


@command("lpop", arity=-2, flags="write fast")
def lpop(client: Client, argv: Argv) -> Reply:
    """Removes and returns the first elements of a list.

    Without count: the element, or null. With count: an array of up to
    count elements ([] for 0), or the null array if there is no list.
    """
    return _pop_command(client, argv, left=True)


@command("rpop", arity=-2, flags="write fast")
def rpop(client: Client, argv: Argv) -> Reply:
    """Removes and returns the last elements of a list (as LPOP, from the tail)."""
    return _pop_command(client, argv, left=False)


def _mpop_args(argv: Argv, numkeys_at: int) -> tuple[Argv, bool, int] | Err:
    """LMPOP's numkeys key... LEFT|RIGHT [COUNT n]: keys, left, count."""
    numkeys = parse_long(
        argv[numkeys_at], 1, LONG_MAX, b"numkeys should be greater than 0"
    )
    if isinstance(numkeys, Err):
        return numkeys
    where_at = numkeys_at + numkeys + 1
    if where_at >= len(argv):
        return SYNTAX_ERROR
    left = _left(argv[where_at])
    if isinstance(left, Err):
        return left
    rest = argv[where_at + 1 :]
    # COUNT once at most: a second one is a syntax error, as in Redis.
    if not rest:
        return argv[numkeys_at + 1 : where_at], left, 1
    if len(rest) != 2 or rest[0].lower() != b"count":
        return SYNTAX_ERROR
    count = parse_long(rest[1], 1, LONG_MAX, b"count should be greater than 0")
    if isinstance(count, Err):
        return count
    return argv[numkeys_at + 1 : where_at], left, count


def _mpop(client: Client, keys: Argv, left: bool, count: int) -> Reply | None:
    """Pop from the first key with a list: [key, [elements]], logged as the
    LPOP/RPOP key n it was; None if every key is empty."""
    for key in keys:
        value = client.db.get(key)
        if value is not None:
            popped = _pop(client, key, value, left, count)
            client.propagate([b"LPOP" if left else b"RPOP", key, b"%d" % len(popped)])
            return [key, popped]
    return None


@command("lmpop", arity=-4, flags="write", keys=(0, 0, 0))
def lmpop(client: Client, argv: Argv) -> Reply:
    """Returns multiple elements from a list after removing them.

    LMPOP numkeys key... LEFT|RIGHT [COUNT n]: [key, [elements]] from the
    first key that has a list, or the null array. Its keys follow numkeys,
    so COMMAND shows 0 0 0 (Redis's movablekeys).
    """
    parsed = _mpop_args(argv, 1)
    if isinstance(parsed, Err):
        return parsed
    reply = _mpop(client, *parsed)
    return NULL_ARRAY if reply is None else reply


@command("lmove", arity=5, flags="write", keys=(1, 2, 1))
def lmove(client: Client, argv: Argv) -> Reply:
    """Pops an element from one list and pushes it to another; the element.

    LMOVE source destination LEFT|RIGHT LEFT|RIGHT; null if source has no
    list. The same key twice rotates the list.
    """
    left_from, left_to = _left(argv[3]), _left(argv[4])
    if isinstance(left_from, Err):
        return left_from
    if isinstance(left_to, Err):
        return left_to
    element = _move(client, argv[1], argv[2], left_from, left_to)
    if element is not None:
        client.propagate(argv)
    return element


@command("rpoplpush", arity=3, flags="write", keys=(1, 2, 1))
def rpoplpush(client: Client, argv: Argv) -> Reply:
    """Pops the last element of a list and pushes it to another's head."""
    element = _move(client, argv[1], argv[2], left_from=False, left_to=True)
    if element is not None:
        client.propagate(argv)
    return element


# ------------------------------------------------------------ blocking


def _bpop(client: Client, keys: Argv, timeout_arg: bytes, left: bool) -> Reply | Block:
    """BLPOP/BRPOP: [key, element] from the first key with a list."""
    timeout = parse_timeout(timeout_arg, client.state.milliseconds())
    if isinstance(timeout, Err):
        return timeout
    pop = b"LPOP" if left else b"RPOP"

    def attempt() -> Reply | None:
        for key in keys:
            value = client.db.get(key)
            if value is not None:
                (element,) = _pop(client, key, value, left, 1)
                client.propagate([pop, key])
                return [key, element]
        return None

    return _wait(keys, timeout, attempt)


@command("blpop", arity=-3, flags="write blocking", keys=(1, -2, 1))
def blpop(client: Client, argv: Argv) -> Reply | Block:
    """Removes and returns the first element of the first non-empty list.

    BLPOP key... timeout: [key, element]; blocks until a push or timeout
    (seconds, decimals allowed, 0 for ever), then the null array.
    """
    return _bpop(client, argv[1:-1], argv[-1], left=True)


@command("brpop", arity=-3, flags="write blocking", keys=(1, -2, 1))
def brpop(client: Client, argv: Argv) -> Reply | Block:
    """Removes and returns the last element of the first non-empty list."""
    return _bpop(client, argv[1:-1], argv[-1], left=False)


def _bmove(
    client: Client,
    argv: Argv,
    left_from: bool,
    left_to: bool,
    timeout: float,
    logged: Argv,
) -> Reply | Block:
    """BLMOVE/BRPOPLPUSH: the element moved; blocks on the source only."""

    def attempt() -> Reply | None:
        element = _move(client, argv[1], argv[2], left_from, left_to)
        if element is not None:
            client.propagate(logged)
        return element

    return _wait([argv[1]], timeout, attempt, moves=True)


@command("blmove", arity=6, flags="write blocking", keys=(1, 2, 1))
def blmove(client: Client, argv: Argv) -> Reply | Block:
    """Pops an element from a list, pushes it to another and returns it.

    BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout; served, it is
    logged as the LMOVE it was.
    """
    left_from, left_to = _left(argv[3]), _left(argv[4])
    if isinstance(left_from, Err):
        return left_from
    if isinstance(left_to, Err):
        return left_to
    timeout = parse_timeout(argv[5], client.state.milliseconds())
    if isinstance(timeout, Err):
        return timeout
    logged = [b"LMOVE", *argv[1:5]]
    return _bmove(client, argv, left_from, left_to, timeout, logged)


@command("brpoplpush", arity=4, flags="write blocking", keys=(1, 2, 1))
def brpoplpush(client: Client, argv: Argv) -> Reply | Block:
    """Pops an element from a list, pushes it to another and returns it.

    BRPOPLPUSH source destination timeout; logged as RPOPLPUSH, as Redis.
    """
    timeout = parse_timeout(argv[3], client.state.milliseconds())
    if isinstance(timeout, Err):
        return timeout
    logged = [b"RPOPLPUSH", argv[1], argv[2]]
    return _bmove(client, argv, False, True, timeout, logged)


@command("blmpop", arity=-5, flags="write blocking", keys=(0, 0, 0))
def blmpop(client: Client, argv: Argv) -> Reply | Block:
    """Pops the first elements from one of multiple lists, or blocks.

    BLMPOP timeout numkeys key... LEFT|RIGHT [COUNT n]: as LMPOP; the
    arguments are checked before the timeout, as in Redis. COMMAND shows
    its keys as 0 0 0 (Redis's movablekeys).
    """
    parsed = _mpop_args(argv, 2)
    if isinstance(parsed, Err):
        return parsed
    timeout = parse_timeout(argv[1], client.state.milliseconds())
    if isinstance(timeout, Err):
        return timeout
    keys, left, count = parsed
    return _wait(keys, timeout, lambda: _mpop(client, keys, left, count))
