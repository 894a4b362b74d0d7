"""What a command answers, and its bytes in RESP2 or RESP3.

A command returns a :data:`Reply`, a plain value; :func:`encode` frames
it for the connection, whose protocol (2, or 3 after ``HELLO 3``) is the
connection's state, not the codec's. The RESP3 types have a RESP2 form,
as Redis gives them: a map is a flat array, a push an array, a double a
bulk string, a null ``$-1`` (or ``*-1`` for a null array).

- ``bytes``: a bulk string; ``int``: an integer (never a bool: use
  :class:`Bool`); ``None``: the null bulk string;
- :class:`Simple` and :class:`Err`: status and error lines;
- ``list``: an array; :data:`NULL_ARRAY`: the null array (BLPOP's
  timeout, EXEC's abort);
- :class:`Map`, :class:`Push`, :class:`Set`, :class:`Double`,
  :class:`Bool`, :class:`Verbatim`: RESP3 types, with their RESP2 forms.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

__all__ = [
    "NULL_ARRAY",
    "OK",
    "QUEUED",
    "Bool",
    "Double",
    "Err",
    "Map",
    "NullArray",
    "Push",
    "Reply",
    "Set",
    "Simple",
    "Verbatim",
    "encode",
]


@attrs.frozen
class Simple:
    """A status line, ``+OK``: ``text`` without CR or LF."""

    text: bytes


@attrs.frozen
class Err:
    """An error line: ``text`` starts with its code (``ERR``, ``WRONGTYPE``)."""

    text: bytes


@attrs.frozen
class NullArray:
    """The null array: ``*-1`` in RESP2, ``_`` in RESP3."""


@attrs.frozen
class Map:
    """Pairs: a RESP3 map, a flat array in RESP2 (``HELLO``, ``CONFIG GET``)."""

    pairs: list[tuple[Reply, Reply]]


@attrs.frozen
class Push:
    """Out-of-band data (pub/sub): RESP3 ``>``, a plain array in RESP2."""

    items: list[Reply]


@attrs.frozen
class Set:
    """A set: RESP3 ``~``, an array in RESP2."""

    items: list[Reply]


@attrs.frozen
class Double:
    """A float: RESP3 ``,``, a bulk string in RESP2."""

    value: float


@attrs.frozen
class Bool:
    """A boolean: RESP3 ``#t``/``#f``, the integer 1 or 0 in RESP2."""

    value: bool


@attrs.frozen
class Verbatim:
    """Text for people (``INFO``): RESP3 ``=`` with ``txt:``, bulk in RESP2."""

    text: bytes


Reply: TypeAlias = (
    "bytes | int | Simple | Err | NullArray | Map | Push | Set"
    " | Double | Bool | Verbatim | list[Reply] | None"
)

NULL_ARRAY = NullArray()
OK = Simple(b"OK")
QUEUED = Simple(b"QUEUED")

# The replies most commands give, framed once.
_FIXED: dict[tuple[object, bool], bytes] = {
    (OK, False): b"+OK\r\n",
    (OK, True): b"+OK\r\n",
    (QUEUED, False): b"+QUEUED\r\n",
    (QUEUED, True): b"+QUEUED\r\n",
    (NULL_ARRAY, False): b"*-1\r\n",
    (NULL_ARRAY, True): b"_\r\n",
}
_SMALL_INTS = [b":%d\r\n" % n for n in range(1024)]


def encode(reply: Reply, resp3: bool) -> bytes:
    """``reply`` in RESP3 if ``resp3``, else in RESP2."""
    # The replies of the commands that run most (a push's length, a pop's
    # element, OK) without building a list to join.
    kind = type(reply)
    if kind is int:
        assert isinstance(reply, int)
        return _SMALL_INTS[reply] if 0 <= reply < 1024 else b":%d\r\n" % reply
    if kind is bytes:
        assert isinstance(reply, bytes)
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    if reply is OK:
        return b"+OK\r\n"
    out: list[bytes] = []
    _encode(reply, resp3, out)
    return out[0] if len(out) == 1 else b"".join(out)


def _encode(reply: Reply, resp3: bool, out: list[bytes]) -> None:
    # The common cases first: this runs once per command.
    kind = type(reply)
    if kind is bytes:
        assert isinstance(reply, bytes)
        out.append(b"$%d\r\n%s\r\n" % (len(reply), reply))
    elif kind is int:
        assert isinstance(reply, int)
        out.append(_SMALL_INTS[reply] if 0 <= reply < 1024 else b":%d\r\n" % reply)
    elif reply is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif kind is list:
        assert isinstance(reply, list)
        out.append(b"*%d\r\n" % len(reply))
        for item in reply:
            _encode(item, resp3, out)
    elif kind is Simple:
        assert isinstance(reply, Simple)
        fixed = _FIXED.get((reply, resp3))
        out.append(fixed if fixed is not None else b"+%s\r\n" % reply.text)
    elif kind is Err:
        assert isinstance(reply, Err)
        out.append(b"-%s\r\n" % reply.text)
    elif kind is NullArray:
        out.append(_FIXED[(NULL_ARRAY, resp3)])
    elif kind is Map:
        assert isinstance(reply, Map)
        count = len(reply.pairs)
        out.append(b"%%%d\r\n" % count if resp3 else b"*%d\r\n" % (2 * count))
        for key, value in reply.pairs:
            _encode(key, resp3, out)
            _encode(value, resp3, out)
    elif kind is Push or kind is Set:
        assert isinstance(reply, (Push, Set))
        mark = (b">" if kind is Push else b"~") if resp3 else b"*"
        out.append(b"%s%d\r\n" % (mark, len(reply.items)))
        for item in reply.items:
            _encode(item, resp3, out)
    elif kind is Double:
        assert isinstance(reply, Double)
        text = _double(reply.value)
        out.append(b",%s\r\n" % text if resp3 else b"$%d\r\n%s\r\n" % (len(text), text))
    elif kind is Bool:
        assert isinstance(reply, Bool)
        if resp3:
            out.append(b"#t\r\n" if reply.value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if reply.value else b":0\r\n")
    elif kind is Verbatim:
        assert isinstance(reply, Verbatim)
        if resp3:
            out.append(b"=%d\r\ntxt:%s\r\n" % (len(reply.text) + 4, reply.text))
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(reply.text), reply.text))
    else:
        raise TypeError(f"not a reply: {reply!r}")


def _double(value: float) -> bytes:
    if value != value:  # NaN
        return b"nan"
    if value in (float("inf"), float("-inf")):
        return b"inf" if value > 0 else b"-inf"
    return repr(value).encode()
