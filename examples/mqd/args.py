"""What Redis makes of argument bytes: integers, timeouts, glob patterns.

One reading of each, shared by every command family, so that the same
argument gets the same reply wherever it is given:

- :func:`parse_int`: string2ll (src/util.c), the strict integer;
- :func:`parse_long`, :func:`parse_count`: getRangeLongFromObjectOrReply
  and getPositiveLongFromObjectOrReply (src/object.c), with their error
  texts ("value is not an integer or out of range" and its family);
- :func:`parse_cursor`: SCAN's cursor, string2ull (src/util.c);
- :func:`parse_timeout`: a blocking command's timeout (src/timeout.c);
- :func:`glob_match`: stringmatchlen (src/util.c), for KEYS, SCAN MATCH,
  PSUBSCRIBE and CONFIG GET.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal

from mqd.replies import Err

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "LONG_MAX",
    "LONG_MIN",
    "SYNTAX_ERROR",
    "glob_match",
    "parse_count",
    "parse_cursor",
    "parse_int",
    "parse_long",
    "parse_timeout",
]

LONG_MAX = 2**63 - 1  # C's long on the 64-bit machines Redis runs on
LONG_MIN = -(2**63)
INT_MAX = 2**31 - 1
INT_MIN = -(2**31)

SYNTAX_ERROR = Err(b"ERR syntax error")

# ------------------------------------------------------------ integers

# string2ll's grammar: no sign but '-', no leading zero, no spaces; fewer
# than LONG_STR_SIZE (21) bytes, which also spares int() a number of
# thousands of digits.
_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,19}")


def parse_int(arg: bytes) -> int | None:
    """``arg`` as a signed 64-bit integer, or None: Redis's string2ll."""
    if _INTEGER.fullmatch(arg) is None:
        return None
    value = int(arg)
    return value if LONG_MIN <= value <= LONG_MAX else None


def parse_long(
    arg: bytes, low: int = LONG_MIN, high: int = LONG_MAX, message: bytes = b""
) -> int | Err:
    """``arg`` as Redis's getRangeLongFromObjectOrReply() reads it.

    Not an integer (or past 64 bits): "value is not an integer or out of
    range"; outside ``low`` to ``high``: "value is out of range, value must
    between ...". A ``message`` replaces both texts, as in Redis: LPOP's
    count gives "must be positive" even for "abc".
    """
    value = parse_int(arg)
    if value is None:
        return Err(b"ERR " + (message or b"value is not an integer or out of range"))
    if low <= value <= high:
        return value
    between = b"value is out of range, value must between %d and %d"
    return Err(b"ERR " + (message or between % (low, high)))


def parse_count(
    arg: bytes, message: bytes = b"value is out of range, must be positive"
) -> int | Err:
    """A count of 0 or more (getPositiveLongFromObjectOrReply)."""
    return parse_long(arg, 0, LONG_MAX, message)


_UNSIGNED = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)")


def parse_cursor(arg: bytes) -> int | None:
    """A SCAN cursor (unsigned 64 bits), or None: Redis's string2ull, which
    falls back on strtoull and so takes leading spaces, a sign, zeros."""
    value = parse_int(arg)
    if value is not None:
        return value if value >= 0 else None
    match = _UNSIGNED.fullmatch(arg)
    if match is None:
        return None
    value = int(match[2])
    if value >= 2**64:
        return None
    return (-value) % 2**64 if match[1] == b"-" else value  # strtoull negates


# ------------------------------------------------------------ timeouts

# What strtold() reads whole (string2ld() in src/util.c): decimal or hex,
# or inf; NaN is refused after parsing, so it is not in here.
_FLOAT = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    rb"|(0[xX])(?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
    rb"|(?i:inf(?:inity)?))"
)
_MAX_FLOAT_CHARS = 5 * 1024  # MAX_LONG_DOUBLE_CHARS
_MAX_SECONDS = Decimal(LONG_MAX) / 1000  # exact: 19 digits
_MILLISECOND = Decimal("0.001")


def parse_timeout(arg: bytes, now: int) -> float | Err:
    """A blocking timeout in seconds, 0 for ever, as src/timeout.c reads it;
    ``now`` is the clock in milliseconds since the epoch.

    Seconds with decimals, rounded up to the millisecond (so -0.0001 is 0,
    for ever, as in Redis); the deadline, ``now`` plus the timeout, must
    fit in a signed 64-bit count of milliseconds. Decimal keeps "0.001"
    and "1e-400" exact, as Redis's long double does where a float would
    round or underflow.
    """
    found = _FLOAT.fullmatch(arg) if len(arg) < _MAX_FLOAT_CHARS else None
    if found is None:
        return Err(b"ERR timeout is not a float or out of range")
    text = arg.decode("ascii")
    if found.group(1):
        try:
            seconds = Decimal(float.fromhex(text))
        except OverflowError:  # past a double, far past any deadline
            seconds = Decimal("-inf" if text.startswith("-") else "inf")
    else:
        seconds = Decimal(text)
    if seconds > _MAX_SECONDS:
        return Err(b"ERR timeout is out of range")
    if seconds <= -_MILLISECOND:
        return Err(b"ERR timeout is negative")
    milliseconds = int(seconds.quantize(_MILLISECOND, rounding=ROUND_CEILING) * 1000)
    if milliseconds > LONG_MAX - now:
        return Err(b"ERR timeout is out of range")
    return milliseconds / 1000


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
    ``[a-\\xff]`` differs there for bytes from 0x80 on. For Redis's
    ``nocase`` (CONFIG GET) lower both sides: it is ASCII ``tolower`` on
    each side, ranges included.

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
