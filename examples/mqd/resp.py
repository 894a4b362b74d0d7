"""Requests in RESP: the bytes clients send, decoded as Redis decodes them.

:class:`Resp` is an aiosock codec whose messages are commands, each a
list of byte strings. Replies are not its business: :mod:`mqd.replies`
frames them, in RESP2 or RESP3 as the connection chose with ``HELLO``.
Redis reads two forms of request (``processInputBuffer`` in
src/networking.c), told apart by their first byte:

- multibulk, ``*<count>\\r\\n`` then ``$<length>\\r\\n<bytes>\\r\\n`` per
  argument: what client libraries send, and the append-only log holds;
  arguments are binary-safe. A count of zero or less is no command.
- inline, any other first byte: a line that ends at ``\\n`` (one ``\\r``
  before it is dropped), split into words as ``sdssplitargs`` in src/sds.c
  does: blanks separate words, ``"double quotes"`` take ``\\n \\r \\t \\b
  \\a``, ``\\xHH`` and ``\\<any>`` escapes, ``'single quotes'`` take only
  ``\\'``, and a closing quote must be followed by a blank or the end. A
  line of blanks is no command. What people type in telnet, and what
  redis-benchmark's PING_INLINE sends.

Numbers are read as ``string2ll`` (src/util.c) reads them: an optional
``-``, digits without a leading zero, at most 20 characters, in 64 bits.

A request Redis refuses raises :class:`ProtocolError`, whose text is the
one Redis replies with after ``-ERR``; the server sends that and closes
the connection, as Redis does, after running the commands before it
(they are in the error's ``messages``).

Redis's own quirks are kept, so that what Redis runs, this runs: the two
bytes after a count's or a length's ``\\r``, and the two after a bulk's
payload, are skipped unread (Redis takes ``$3\\r\\nfooXY`` as ``foo``).
Where Redis's answer depends on how its reads fall (it looks for a line
end only in what it has buffered), this decoder answers as Redis does
when the bytes come one at a time, so that the result never depends on
the chunking: a line whose end is not within its first ``max_inline + 1``
bytes is too big. Two deviations, both about NUL bytes, which Redis
mishandles because it looks for line ends with ``strchr``: Redis never
sees a line end after a NUL and so stalls until the line is too big; here
a NUL is an ordinary byte (a count or length holding one is invalid), and
an inline line ends at its first NUL, as ``sdssplitargs`` reads it.
Not here: Redis's tighter limits before ``AUTH`` (10 arguments, 16 KiB
arguments), which need the connection's state, and its limit on the
query buffer (client-query-buffer-limit), which is the server's to apply
with :attr:`buffered`.
"""

from __future__ import annotations

import functools
import re
from itertools import accumulate, compress, pairwise

import attrs

from aiosock import (
    Buffer,
    Codec,
    Encoded,
    IncompleteFrame,
    LocalProtocolError,
    RemoteProtocolError,
)
from aiosock.core.codecs import GATHER_THRESHOLD

__all__ = [
    "MAX_ARGS",
    "MAX_BULK",
    "MAX_INLINE",
    "ProtocolError",
    "Resp",
    "split_inline",
]

#: Redis's proto-max-bulk-len default (src/config.c): the longest argument.
MAX_BULK = 512 * 1024 * 1024
#: The most arguments in one command: Redis 2.6 to 6.2 refused more
#: (Redis 7 allows INT_MAX and grows its argv as they arrive); here it
#: bounds the list one command can make the daemon build.
MAX_ARGS = 1024 * 1024
#: PROTO_INLINE_MAX_SIZE (src/server.h): the longest inline request, and
#: the longest count or length line, end excluded.
MAX_INLINE = 64 * 1024

_STAR, _DOLLAR = ord("*"), ord("$")
_INT64 = 2**63


class ProtocolError(RemoteProtocolError):
    """A request Redis refuses: reply ``-ERR`` and the text, then close.

    ``text`` is Redis's error text, byte for byte (``b"Protocol error:
    invalid bulk length"``), so the reply is ``Err(b"ERR " + exc.text)``;
    ``str()`` is the same text (a byte above 0x7f in "expected '$', got
    'x'" is decoded as Latin-1). ``messages`` holds the commands that came
    before the fault in the same read: Redis runs those before it answers.
    """

    def __init__(self, text: bytes, *, messages: list[list[bytes]]) -> None:
        super().__init__(text.decode("latin-1"), messages=messages)
        self.text = text


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen(kw_only=True)
class Resp(Codec[list[bytes]]):
    """Redis requests: multibulk or inline in, commands out; multibulk out.

    ``max_bulk`` bounds an argument's length, ``max_args`` a command's
    argument count, and ``max_inline`` an inline request and a count or
    length line, as Redis bounds them (the defaults are Redis's).
    """

    max_bulk: int = attrs.field(default=MAX_BULK, validator=_positive)
    max_args: int = attrs.field(default=MAX_ARGS, validator=_positive)
    max_inline: int = attrs.field(default=MAX_INLINE, validator=_positive)

    def decoder(self) -> _RespDecoder:
        return _RespDecoder(self.max_bulk, self.max_args, self.max_inline)

    def encode(self, message: list[bytes]) -> Encoded:
        """``message`` as an array of bulk strings, as clients send it.

        :class:`LocalProtocolError` for what this codec's decoder would not
        take: no arguments (that is no command), too many, one too long.
        """
        count = len(message)
        total = sum(map(len, message))
        limit = self.max_bulk
        if not 0 < count <= self.max_args or (
            total > limit and max(map(len, message)) > limit
        ):
            raise LocalProtocolError(
                f"a command has 1 to {self.max_args} arguments of at most {limit} "
                f"bytes, not {count} of up to {max(map(len, message), default=0)}"
            )
        if total < GATHER_THRESHOLD:
            body = b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in message])
            return b"*%d\r\n" % count + body
        out: list[Buffer] = [b"*%d\r\n" % count]
        for arg in message:
            if len(arg) < GATHER_THRESHOLD:
                out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
            else:  # a gather write: the payload is not copied here
                out += (b"$%d\r\n" % len(arg), arg, b"\r\n")
        return out


# ---------------------------------------------------------------- numbers

# Lines up to this many digits are looked up, not parsed: four digits hold
# every count and nearly every key and value length a client sends.
_TABLE_DIGITS = 4


@functools.lru_cache(maxsize=8)
def _lines(mark: bytes, lowest: int, highest: int, longest: int) -> dict[bytes, int]:
    """``{b"$5": 5, ...}``: the valid lines of ``lowest`` to ``highest``.

    Only numbers of at most ``_TABLE_DIGITS`` digits, in lines of at most
    ``longest`` bytes (a longer one is too big for Redis).
    """
    top = min(highest, 10**_TABLE_DIGITS - 1)
    lines = ((mark + b"%d" % n, n) for n in range(lowest, top + 1))
    return {line: n for line, n in lines if len(line) <= longest}


def _string2ll(text: bytes) -> int | None:
    """``text`` as a number as Redis's ``string2ll`` reads it, or None."""
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or (digits[0] == 0x30 and text != b"0") or len(text) > 20:
        return None
    value = int(text)
    return value if -_INT64 <= value < _INT64 else None


# ----------------------------------------------------------------- inline

_BLANK = rb" \t\n\r\x0b\x0c"  # isspace() in the C locale
# Bytes that make sdssplitargs differ from bytes.split(): quotes, and the
# blanks that separate words but do not end one.
_NOT_PLAIN = re.compile(rb"[\"'\x0b\x0c]").search
# One word of sdssplitargs: blanks, then bytes up to a word end or a quote,
# then at most one quoted part, which ends the word. The possessive
# quantifiers stop backtracking, so that '\\'' cannot close a quote early.
_WORD = re.compile(
    rb"[" + _BLANK + rb"]*+"
    rb"([^ \t\n\r\"']*+)"
    rb'(?:"((?:\\x[0-9a-fA-F]{2}|\\.|[^"\\])*+)"(?=[' + _BLANK + rb"]|\Z)"
    rb"|'((?:\\'|[^'])*+)'(?=[" + _BLANK + rb"]|\Z))?",
    re.DOTALL,
).match
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL).sub
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"a": b"\a"}


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match[1]
    if len(code) == 3:
        return bytes([int(code[1:], 16)])
    return _ESCAPES.get(code, code)


def split_inline(line: bytes) -> list[bytes] | None:
    """The words of an inline request as ``sdssplitargs`` splits them.

    None for unbalanced quotes (or a closing quote not followed by a
    blank). ``line`` ends at its first NUL, as the C string Redis splits.
    """
    if b"\0" in line:
        line = line[: line.index(b"\0")]
    if _NOT_PLAIN(line) is None:
        return line.split()  # splits on the four blanks that end a word
    words: list[bytes] = []
    pos, end = 0, len(line)
    while True:
        match = _WORD(line, pos)
        assert match is not None  # every part of the pattern may be empty
        pos = match.end()
        bare, double, single = match.groups()
        if double is not None:
            words.append(bare + _ESCAPE(_unescape, double))
        elif single is not None:
            words.append(bare + single.replace(b"\\'", b"'"))
        elif pos < end and line[pos] in b"\"'":
            return None  # a quote that never closes, or closes too early
        elif bare:
            words.append(bare)
        else:  # only blanks were left
            return words


# ---------------------------------------------------------------- decoder


def _fault(text: bytes, out: list[list[bytes]]) -> ProtocolError:
    return ProtocolError(b"Protocol error: " + text, messages=out)


class _RespDecoder:
    """Commands from a byte stream; one per connection.

    The state between reads is the command in progress: ``_args`` read so
    far, ``_left`` to come (0 between commands), and ``_bulk``, the length
    of the argument whose payload is arriving (-1 while its length line
    is); ``_pending`` holds the bytes after the last parsed line, and
    ``_held`` counts the parsed bytes of the command in progress. So a
    long argument in many reads is never searched again, and each read
    costs time in its own length only.
    """

    __slots__ = (
        "_args",
        "_bulk",
        "_counts",
        "_failure",
        "_held",
        "_left",
        "_max_args",
        "_max_bulk",
        "_max_inline",
        "_pending",
        "_sizes",
    )

    def __init__(self, max_bulk: int, max_args: int, max_inline: int) -> None:
        self._max_bulk = max_bulk
        self._max_args = max_args
        self._max_inline = max_inline
        self._counts = _lines(b"*", 1, max_args, max_inline)
        self._sizes = _lines(b"$", 0, max_bulk, max_inline)
        self._failure: str | None = None
        self._pending = bytearray()
        self._args: list[bytes] = []
        self._left = 0
        self._bulk = -1
        self._held = 0

    @property
    def buffered(self) -> int:
        """Bytes received since the last complete command."""
        return self._held + len(self._pending)

    def feed(self, data: Buffer) -> list[list[bytes]]:
        if self._failure is not None:
            raise LocalProtocolError(f"decoder cannot take more data: {self._failure}")
        buf = data if type(data) is bytes else bytes(data)
        out: list[list[bytes]] = []
        try:
            if self._pending:
                buf = self._resume(buf, out)
            pos = 0
            if buf and buf[0] == _STAR and not self._left:
                pos = self._plain(buf, out)
            if pos < len(buf):
                pos = self._parse(buf, pos, out)
                if pos < len(buf):
                    self._pending += buf[pos:] if pos else buf
        except ProtocolError as exc:
            self._failure = f"it already failed ({exc})"
            raise
        return out

    def eof(self) -> None:
        if self._failure is not None:
            raise LocalProtocolError(f"decoder cannot take more data: {self._failure}")
        self._failure = "the stream already ended"
        if self._left:
            raise IncompleteFrame(self._partial())
        if self._pending:
            raise IncompleteFrame(bytes(self._pending))

    def _partial(self) -> bytes:
        """The command in progress as received (with ``\\r\\n`` for the
        bytes Redis skips unread): what :class:`IncompleteFrame` carries."""
        args = self._args
        head = b"*%d\r\n" % (len(args) + self._left)
        done = b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in args])
        size = b"$%d\r\n" % self._bulk if self._bulk >= 0 else b""
        return head + done + size + self._pending

    def _resume(self, data: bytes, out: list[list[bytes]]) -> bytes:
        """Go on from ``_pending`` with ``data``; return what is left to parse.

        A payload takes only the bytes it lacks; a line is joined to
        ``data`` only once ``data`` holds its end, so that a line arriving
        a byte at a time is not searched again at every byte.
        """
        pending = self._pending
        if self._bulk >= 0:
            need = self._bulk + 2 - len(pending)
            if len(data) < need:
                pending += data
                return b""
            pending += data[:need]
            del pending[self._bulk :]
            self._args.append(bytes(pending))
            pending.clear()
            self._held += self._bulk + 2
            self._bulk = -1
            self._left -= 1
            if not self._left:
                out.append(self._args)
                self._args, self._held = [], 0
            return data[need:]
        inline = not self._left and pending[0] != _STAR
        end = b"\n" if inline else b"\r"
        if end not in data and pending[-1] != end[0]:
            if len(pending) + len(data) > self._max_inline:
                raise self._too_big(inline, out)
            pending += data
            return b""
        data = b"".join((pending, data))
        pending.clear()
        return data

    def _too_big(self, inline: bool, out: list[list[bytes]]) -> ProtocolError:
        if inline:
            return _fault(b"too big inline request", out)
        if self._left:
            return _fault(b"too big bulk count string", out)
        return _fault(b"too big mbulk count string", out)

    def _plain(self, buf: bytes, out: list[list[bytes]]) -> int:
        """Decode the plain commands ``buf`` starts with; return their size.

        The fast path, for what clients send: split at every CR LF at
        once, a command is plain when its count and lengths are in the
        tables and each argument is as long as announced (so it holds no
        CR LF). It stops at the first other, which :meth:`_parse` reads.
        A run of commands with the same count is checked in one go.
        """
        parts = buf.split(b"\r\n")
        complete = len(parts) - 1  # the last part has no CR LF after it yet
        counts, sizes = self._counts, self._sizes
        count = counts.get(parts[0])
        if count is None:
            return 0
        if complete == 2 * count + 1 and not parts[-1]:
            # Exactly one command, as a client that waits for each reply
            # sends it: none of the bookkeeping of a pipeline.
            args = parts[2:complete:2]
            if list(map(len, args)) == list(map(sizes.get, parts[1:complete:2])):
                out.append(args)
                return len(buf)
        keep = [True] * complete
        # Pipelines often repeat one command: its run is marked at once.
        step = 2 * count + 1
        n = complete // step
        heads = parts[0 : n * step : step]
        if heads.count(parts[0]) != n:
            n = next(k for k, head in enumerate(heads) if head != parts[0])
        keep[0 : n * step : step] = [False] * n
        found = [count] * n
        add = found.append
        i = n * step
        while i < complete:
            count = counts.get(parts[i])
            if count is None:
                break
            j = i + 2 * count + 1
            if j > complete:
                break
            keep[i] = False
            add(count)
            i = j
        del keep[i:]
        rest = list(compress(parts, keep))
        args = rest[1::2]
        if list(map(len, args)) == list(map(sizes.get, rest[::2])):
            out += [args[a:b] for a, b in pairwise(accumulate(found, initial=0))]
        else:
            i = 0
            for count in found:
                j = i + 2 * count + 1
                args = parts[i + 2 : j : 2]
                if list(map(len, args)) != list(map(sizes.get, parts[i + 1 : j : 2])):
                    break
                out.append(args)
                i = j
        # What is left is the short part: measure that.
        return len(buf) - sum(map(len, parts[i:])) - 2 * (complete - i)

    def _parse(self, buf: bytes, pos: int, out: list[list[bytes]]) -> int:
        """Decode from ``buf[pos:]`` what is complete; return where the
        rest starts. Every form, every fault; the state is saved on return."""
        find, end = buf.find, len(buf)
        max_inline = self._max_inline
        window = max_inline + 1  # a line's end must be this near its start
        counts, sizes = self._counts, self._sizes
        args, left, bulk = self._args, self._left, self._bulk
        start = -self._held  # where the command in progress began
        while pos < end:
            if not left:
                start = pos
                if buf[pos] != _STAR:
                    nl = find(b"\n", pos, pos + window)
                    if nl < 0:
                        if end - pos > max_inline:
                            raise _fault(b"too big inline request", out)
                        break
                    # One \r before the \n is part of the line end.
                    cut = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
                    words = split_inline(buf[pos:cut])
                    if words is None:
                        raise _fault(b"unbalanced quotes in request", out)
                    pos = nl + 1
                    if words:
                        out.append(words)
                    continue
                nl = find(b"\r", pos, pos + window)
                if nl < 0:
                    if end - pos > max_inline:
                        raise _fault(b"too big mbulk count string", out)
                    break
                if nl + 1 == end:  # Redis wants the byte after \r too
                    break
                line = buf[pos:nl]
                count = counts.get(line)
                if count is None:
                    count = _string2ll(line[1:])
                    if count is None or count > self._max_args:
                        raise _fault(b"invalid multibulk length", out)
                pos = nl + 2
                if count <= 0:
                    continue
                args, left = [], count
            if bulk < 0:
                nl = find(b"\r", pos, pos + window)
                if nl < 0:
                    if end - pos > max_inline:
                        raise _fault(b"too big bulk count string", out)
                    break
                if nl + 1 == end:
                    break
                line = buf[pos:nl]
                size = sizes.get(line)
                if size is None:
                    if buf[pos] != _DOLLAR:
                        # Redis replaces CR and LF in an error with spaces.
                        got = b" " if buf[pos] in b"\r\n" else buf[pos : pos + 1]
                        raise _fault(b"expected '$', got '%s'" % got, out)
                    size = _string2ll(line[1:])
                    if size is None or not 0 <= size <= self._max_bulk:
                        raise _fault(b"invalid bulk length", out)
                pos = nl + 2
                bulk = size
            if end - pos < bulk + 2:
                break
            args.append(buf[pos : pos + bulk])
            pos += bulk + 2
            bulk = -1
            left -= 1
            if not left:
                out.append(args)
        self._args, self._left, self._bulk = args, left, bulk
        self._held = pos - start if left else 0
        return pos
