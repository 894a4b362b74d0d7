"""Codecs: a byte stream in, messages out, and messages back to bytes.

A codec is a frozen description (``LengthPrefixed(header_size=2)``); its
``decoder()`` makes the stateful half, one per connection:

- ``decoder.feed(data)`` takes whatever the socket gave and returns every
  message it completed, keeping the rest. The result is the same however
  the stream is chunked.
- ``decoder.eof()`` says the stream ended; it raises :class:`IncompleteFrame`
  (carrying the partial bytes) when a frame was cut off.
- ``codec.encode(message)`` returns what to write: ``bytes``, or a list of
  buffers for a gather write when copying the payload would cost more.

Every codec has a size limit, enforced before anything is buffered: a
length header above it, or a delimited frame growing past it, raises
:class:`FrameTooLarge` at once, so a decoder holds at most one frame.
Malformed input raises only :class:`RemoteProtocolError` and its
subclasses; a decoder that has raised stays failed and refuses more input
with :class:`LocalProtocolError`. The exception carries, in ``messages``,
whatever the failing call completed before the fault.
"""

from __future__ import annotations

import struct
from typing import Literal, Protocol, cast

import attrs
from typing_extensions import TypeVar

from aiosock.core.errors import (
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
    RemoteProtocolError,
)
from aiosock.core.limits import DEFAULT_MAX_FRAME_SIZE

__all__ = [
    "Buffer",
    "Codec",
    "Decoder",
    "Delimited",
    "Encoded",
    "LengthPrefixed",
    "Lines",
    "Raw",
]

Buffer = bytes | bytearray | memoryview
Encoded = bytes | list[Buffer]

# Below this many payload bytes, one small copy into a single ``bytes`` is
# cheaper than a gather write of two buffers (writelines builds a list and
# the kernel walks an iovec); above it, copying the payload costs more.
GATHER_THRESHOLD = 2048

#: The message type a codec decodes to and encodes from. An API given no
#: codec uses :class:`Raw`, so the type is ``bytes`` where none is named.
T = TypeVar("T", default=bytes)


class Decoder(Protocol[T]):
    """The stateful half of a codec: one per connection."""

    __slots__ = ()

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        ...

    def feed(self, data: Buffer) -> list[T]:
        """Take the next bytes of the stream; return the messages completed.

        Raises :class:`RemoteProtocolError` (or a subclass) for input that
        breaks the framing, carrying in ``messages`` what this call
        completed before the fault; after that, and after :meth:`eof`,
        :class:`LocalProtocolError`.
        """
        ...

    def eof(self) -> None:
        """The stream ended; raise :class:`IncompleteFrame` if inside a frame."""
        ...


class Codec(Protocol[T]):
    """A frozen description of a framing; it makes decoders and encodes.

    ``T`` is the message type: the built-in codecs are ``Codec[bytes]``; a
    codec of your own may decode to anything (a command, a JSON value) and
    every API it is given to (``serve``, ``connect``, the datagram
    openers, the blocking driver) carries that type to your code. Write
    one as a frozen class with ``decoder()`` and ``encode()``, and a
    decoder class with ``buffered``, ``feed()`` and ``eof()``; the
    README's "Writing a codec" shows one.
    """

    __slots__ = ()

    def decoder(self) -> Decoder[T]:
        """A new decoder, for one connection."""
        ...

    def encode(self, message: T) -> Encoded:
        """What to write for ``message``; :class:`LocalProtocolError` if unframable."""
        ...


def codec_or_raw(codec: Codec[T] | None, max_size: int) -> Codec[T]:
    """``codec``, or for None :class:`Raw` chunks of at most ``max_size``.

    What every API given no codec uses; its message type is then ``bytes``,
    which is what ``T`` defaults to.
    """
    return cast("Codec[T]", Raw(max_size=max_size)) if codec is None else codec


class _DecoderState:
    """What every decoder shares: refusing input after a failure or EOF."""

    __slots__ = ("_failure",)

    def __init__(self) -> None:
        self._failure: str | None = None

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise LocalProtocolError(f"decoder cannot take more data: {self._failure}")

    def _fail(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        self._failure = f"it already failed ({exc})"
        return exc


class _BufferingDecoder(_DecoderState):
    """A decoder that holds the start of a frame until the rest arrives."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def eof(self) -> None:
        self._check_usable()
        self._failure = "the stream already ended"
        if self._pending:
            raise IncompleteFrame(bytes(self._pending))


def _check_limit(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


# --------------------------------------------------------------------- Raw


@attrs.frozen(kw_only=True)
class Raw(Codec[bytes]):
    """The bytes as they come: every chunk is a message.

    Chunks larger than ``max_size`` are split, never refused, so the only
    bound is on the size of one message. No chunk is ever empty, and EOF
    never fails.
    """

    max_size: int = attrs.field(default=DEFAULT_MAX_FRAME_SIZE, validator=_check_limit)

    def decoder(self) -> _RawDecoder:
        return _RawDecoder(self.max_size)

    def encode(self, message: Buffer) -> Encoded:
        return message if type(message) is bytes else bytes(message)


class _RawDecoder(_DecoderState):
    __slots__ = ("_ended", "_max_size")

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self._max_size = max_size

    @property
    def buffered(self) -> int:
        return 0

    def feed(self, data: Buffer) -> list[bytes]:
        if self._failure is not None:  # inline: feed() is the per-read path
            self._check_usable()
        if not data:
            return []
        data = data if type(data) is bytes else bytes(data)
        if len(data) <= self._max_size:
            return [data]
        step = self._max_size
        return [data[i : i + step] for i in range(0, len(data), step)]

    def eof(self) -> None:
        self._check_usable()
        self._failure = "the stream already ended"


# --------------------------------------------------------- LengthPrefixed

_HEADERS = {
    (size, order): struct.Struct(("<", ">")[order == "big"] + code)
    for size, code in [(1, "B"), (2, "H"), (4, "I"), (8, "Q")]
    for order in ("big", "little")
}


@attrs.frozen(kw_only=True)
class LengthPrefixed(Codec[bytes]):
    """Each frame is an unsigned length header, then that many payload bytes.

    ``header_size`` is 1, 2, 4 or 8 bytes, in ``byteorder``. The length
    counts the payload only; zero-length frames are legal. ``max_size``
    defaults to 1 MiB or the largest length the header can hold, whichever
    is smaller.
    """

    header_size: Literal[1, 2, 4, 8] = attrs.field(
        default=4, validator=attrs.validators.in_((1, 2, 4, 8))
    )
    byteorder: Literal["big", "little"] = attrs.field(
        default="big", validator=attrs.validators.in_(("big", "little"))
    )
    max_size: int = attrs.field(validator=_check_limit)

    @max_size.default
    def _default_max_size(self) -> int:
        return min(DEFAULT_MAX_FRAME_SIZE, self._largest_length())

    @max_size.validator
    def _check_max_size(self, _: attrs.Attribute[int], value: int) -> None:
        if value > self._largest_length():
            raise ValueError(
                f"max_size {value} does not fit a {self.header_size}-byte header "
                f"(at most {self._largest_length()})"
            )

    @property
    def _header(self) -> struct.Struct:
        return _HEADERS[self.header_size, self.byteorder]

    def _largest_length(self) -> int:
        return int(2 ** (8 * self.header_size)) - 1

    def decoder(self) -> _LengthPrefixedDecoder:
        return _LengthPrefixedDecoder(self._header, self.max_size)

    def encode(self, message: Buffer) -> Encoded:
        size = len(message)
        if size > self.max_size:
            raise LocalProtocolError(
                f"message of {size} bytes is larger than max_size {self.max_size}"
            )
        header = self._header.pack(size)
        if size >= GATHER_THRESHOLD:
            return [header, message]
        return header + message


class _LengthPrefixedDecoder(_BufferingDecoder):
    # _pending holds one partial frame, header included; _frame_end is that
    # frame's whole length once its header is complete, else 0.
    __slots__ = ("_frame_end", "_header_size", "_max_size", "_unpack")

    def __init__(self, header: struct.Struct, max_size: int) -> None:
        super().__init__()
        self._unpack = header.unpack_from
        self._header_size = header.size
        self._max_size = max_size
        self._frame_end = 0

    def feed(self, data: Buffer) -> list[bytes]:
        if self._failure is not None:  # inline: feed() is the per-read path
            self._check_usable()
        data = data if type(data) is bytes else bytes(data)
        out: list[bytes] = []
        pos = self._finish_pending(data, out) if self._pending else 0
        # The hot loop: whole frames are sliced straight out of ``data``.
        unpack, hsize, limit = self._unpack, self._header_size, self._max_size
        end = len(data)
        while end - pos >= hsize:
            (size,) = unpack(data, pos)
            if size > limit:
                raise self._fail(FrameTooLarge(size=size, limit=limit, messages=out))
            start = pos + hsize
            if start + size > end:
                self._frame_end = start + size - pos
                break
            pos = start + size
            out.append(data[start:pos])
        if pos < end:
            self._pending += data[pos:] if pos else data
        return out

    def _finish_pending(self, data: bytes, out: list[bytes]) -> int:
        """Complete the pending frame from ``data``; return the bytes used.

        Only what the pending frame needs is copied, so a large frame that
        arrives in many chunks costs linear time.
        """
        pending, hsize = self._pending, self._header_size
        used = 0
        if not self._frame_end:
            used = hsize - len(pending)
            pending += data[:used]
            if len(pending) < hsize:
                return len(data)
            (size,) = self._unpack(pending)
            if size > self._max_size:
                raise self._fail(FrameTooLarge(size=size, limit=self._max_size))
            self._frame_end = hsize + size
        need = self._frame_end - len(pending)
        pending += data[used : used + need]
        if len(pending) < self._frame_end:
            return len(data)
        out.append(bytes(pending[hsize:]))
        pending.clear()
        self._frame_end = 0
        return used + need


# ---------------------------------------------------- Delimited and Lines


def _check_delimiter(_: object, __: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or not value:
        raise ValueError(f"delimiter must be non-empty bytes, got {value!r}")


@attrs.frozen(kw_only=True)
class Delimited(Codec[bytes]):
    """Frames end with ``delimiter``, which cannot occur inside a message.

    ``max_length`` bounds a message without its delimiter. With
    ``keep_delimiter`` the decoded messages end with the delimiter, and
    messages to encode must already end with it (once, at the end);
    otherwise it is stripped on decode and added on encode. Empty messages
    are legal.
    """

    delimiter: bytes = attrs.field(validator=_check_delimiter)
    max_length: int = attrs.field(
        default=DEFAULT_MAX_FRAME_SIZE, validator=_check_limit
    )
    keep_delimiter: bool = False

    def decoder(self) -> _DelimitedDecoder:
        return _DelimitedDecoder(self.delimiter, self.max_length, self.keep_delimiter)

    def encode(self, message: Buffer) -> Encoded:
        data = message if type(message) is bytes else bytes(message)
        delimiter = self.delimiter
        found = self._first_delimiter(data)
        if self.keep_delimiter:
            body = len(data) - len(delimiter)
            if body < 0 or found != body:
                raise LocalProtocolError(
                    f"message must end with the delimiter {delimiter!r} and "
                    "contain it nowhere else"
                )
        else:
            body = len(data)
            if found >= 0:
                raise LocalProtocolError(
                    f"message contains the delimiter {delimiter!r} at byte {found}"
                )
        if body > self.max_length:
            raise LocalProtocolError(
                f"message of {body} bytes is longer than max_length {self.max_length}"
            )
        if self.keep_delimiter:
            return data
        if body >= GATHER_THRESHOLD:
            return [data, delimiter]
        return data + delimiter

    def _first_delimiter(self, data: bytes) -> int:
        """Where the peer will see the first delimiter in ``data``, or -1.

        With ``keep_delimiter`` unset, a delimiter that overlaps itself
        (``b"aba"``) can also start in the message's tail and end in the
        delimiter appended after it; that counts as inside the message.
        """
        delimiter = self.delimiter
        found = data.find(delimiter)
        width = len(delimiter)
        if found >= 0 or width == 1 or self.keep_delimiter:
            return found
        tail = data[-(width - 1) :]
        at = (tail + delimiter).find(delimiter)
        return len(data) - len(tail) + at if at < len(tail) else -1


def _check_line_ending(_: object, __: attrs.Attribute[bytes], value: bytes) -> None:
    if value not in (b"\n", b"\r\n"):
        raise ValueError(f"a line ends with b'\\n' or b'\\r\\n', not {value!r}")


@attrs.frozen(kw_only=True)
class Lines(Delimited):
    """Text-protocol lines: :class:`Delimited` with a line ending.

    The ending is ``b"\\n"`` (the default) or ``b"\\r\\n"``.
    """

    delimiter: bytes = attrs.field(default=b"\n", validator=_check_line_ending)


class _DelimitedDecoder(_BufferingDecoder):
    # _pending never holds a whole delimiter, so only new bytes are searched
    # (and the len(delimiter) - 1 pending bytes a delimiter may straddle):
    # a long line costs linear time however it is chunked.
    __slots__ = ("_delimiter", "_keep", "_max_length", "_too_long")

    def __init__(self, delimiter: bytes, max_length: int, keep: bool) -> None:
        super().__init__()
        self._delimiter = delimiter
        self._max_length = max_length
        self._keep = keep
        # A run this long with no delimiter in it holds a message longer
        # than max_length, whatever comes next.
        self._too_long = max_length + len(delimiter)

    def feed(self, data: Buffer) -> list[bytes]:
        if self._failure is not None:  # inline: feed() is the per-read path
            self._check_usable()
        data = data if type(data) is bytes else bytes(data)
        out: list[bytes] = []
        pending, delimiter = self._pending, self._delimiter
        if pending and len(delimiter) > 1:
            data = self._finish_straddling(data, out)
        parts = data.split(delimiter)
        rest = parts.pop()
        if pending:
            if not parts:
                size = len(pending) + len(rest)
                if size >= self._too_long:
                    raise self._fail(FrameTooLarge(size=size, limit=self._max_length))
                pending += rest
                return out
            pending += parts[0]
            parts[0] = bytes(pending)
            pending.clear()
        if parts:
            self._check_lengths(parts, out)
            if self._keep:
                out.extend([part + delimiter for part in parts])
            else:
                out.extend(parts)
        if len(rest) >= self._too_long:
            raise self._fail(
                FrameTooLarge(size=len(rest), limit=self._max_length, messages=out)
            )
        pending += rest
        return out

    def _finish_straddling(self, data: bytes, out: list[bytes]) -> bytes:
        """End the pending message if a delimiter starts in its tail.

        Returns what is left of ``data`` after that delimiter (all of it
        when there is none). Only the last ``len(delimiter) - 1`` pending
        bytes are searched: the rest holds no delimiter.
        """
        pending, delimiter = self._pending, self._delimiter
        width = len(delimiter)
        tail = bytes(pending[-(width - 1) :])
        at = (tail + data[: width - 1]).find(delimiter)
        if at < 0:
            return data
        body = len(pending) - len(tail) + at
        if body > self._max_length:
            raise self._fail(FrameTooLarge(size=body, limit=self._max_length))
        out.append(bytes(pending[:body]) + (delimiter if self._keep else b""))
        pending.clear()
        return data[at + width - len(tail) :]

    def _check_lengths(self, parts: list[bytes], out: list[bytes]) -> None:
        limit = self._max_length
        if max(map(len, parts)) <= limit:
            return
        for index, part in enumerate(parts):
            if len(part) > limit:
                done = parts[:index]
                if self._keep:
                    done = [p + self._delimiter for p in done]
                raise self._fail(
                    FrameTooLarge(size=len(part), limit=limit, messages=out + done)
                )
