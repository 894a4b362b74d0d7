from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from aiosock.core.codecs import (
    GATHER_THRESHOLD,
    Buffer,
    Codec,
    Delimited,
    Encoded,
    LengthPrefixed,
    Lines,
    Raw,
)
from aiosock.core.errors import (
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
    RemoteProtocolError,
)
from aiosock.core.limits import DEFAULT_MAX_FRAME_SIZE

# ------------------------------------------------------------------ helpers


def flat(encoded: Encoded) -> bytes:
    return encoded if isinstance(encoded, bytes) else b"".join(encoded)


def wire(codec: Codec, messages: Sequence[bytes]) -> bytes:
    return b"".join(flat(codec.encode(m)) for m in messages)


def split(data: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    """``data`` in chunks of the given sizes, cycling, the last one short."""
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        yield data[pos : pos + size]
        pos += size
        i += 1


def decode(codec: Codec, chunks: Iterator[bytes] | Sequence[bytes]) -> list[bytes]:
    decoder = codec.decoder()
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    decoder.eof()
    return out


# ------------------------------------------------------------ strategies

HEADER_SIZES: list[Literal[1, 2, 4, 8]] = [1, 2, 4, 8]
BYTE_ORDERS: list[Literal["big", "little"]] = ["big", "little"]
chunk_sizes = st.lists(st.integers(1, 97), min_size=1, max_size=8)
small_limit = st.integers(1, 300)


@st.composite
def length_prefixed(draw: st.DrawFn) -> LengthPrefixed:
    header_size = draw(st.sampled_from(HEADER_SIZES))
    byteorder = draw(st.sampled_from(BYTE_ORDERS))
    return LengthPrefixed(
        header_size=header_size,
        byteorder=byteorder,
        max_size=draw(st.integers(1, min(300, 2 ** (8 * header_size) - 1))),
    )


@st.composite
def delimited(draw: st.DrawFn) -> Delimited:
    keep = draw(st.booleans())
    if draw(st.booleans()):
        line_end = draw(st.sampled_from([b"\n", b"\r\n"]))
        return Lines(
            delimiter=line_end, max_length=draw(small_limit), keep_delimiter=keep
        )
    # Few distinct bytes, so that delimiters (also self-overlapping ones
    # such as b"aba") really occur inside generated data.
    delimiter = draw(st.binary(min_size=1, max_size=4).map(lambda b: b.translate(AB)))
    return Delimited(
        delimiter=delimiter, max_length=draw(small_limit), keep_delimiter=keep
    )


AB = bytes.maketrans(bytes(range(256)), b"ab" * 128)
codecs = st.one_of(
    length_prefixed(), delimited(), small_limit.map(lambda n: Raw(max_size=n))
)
ab_bytes = st.binary(max_size=60).map(lambda b: b.translate(AB))


def encodable(codec: Codec, candidates: list[bytes]) -> list[bytes]:
    """The candidates the codec can frame (delimited ones may not)."""
    out = []
    for message in candidates:
        if isinstance(codec, Delimited) and codec.keep_delimiter:
            message += codec.delimiter
        try:
            codec.encode(message)
        except LocalProtocolError:
            continue
        out.append(message)
    return out


@st.composite
def codec_and_messages(draw: st.DrawFn) -> tuple[Codec, list[bytes]]:
    codec = draw(codecs)
    candidates = draw(
        st.lists(st.one_of(st.binary(max_size=300), ab_bytes), max_size=12)
    )
    messages = encodable(codec, candidates)
    if isinstance(codec, Raw):
        messages = [m for m in messages if m]  # Raw has no empty messages
    return codec, messages


# ---------------------------------------------------------- properties


def same_stream(codec: Codec, got: list[bytes], sent: list[bytes]) -> None:
    if isinstance(codec, Raw):
        # Raw keeps bytes, not boundaries; no chunk is empty or oversize.
        assert b"".join(got) == b"".join(sent)
        assert all(0 < len(m) <= codec.max_size for m in got)
    else:
        assert got == sent


@given(codec_and_messages())
def test_round_trip_in_one_shot(case: tuple[Codec, list[bytes]]) -> None:
    codec, messages = case
    same_stream(codec, decode(codec, [wire(codec, messages)]), messages)


@given(codec_and_messages())
def test_round_trip_byte_by_byte(case: tuple[Codec, list[bytes]]) -> None:
    codec, messages = case
    same_stream(codec, decode(codec, split(wire(codec, messages), [1])), messages)


@given(codec_and_messages(), chunk_sizes)
def test_round_trip_whatever_the_chunking(
    case: tuple[Codec, list[bytes]], sizes: list[int]
) -> None:
    codec, messages = case
    same_stream(codec, decode(codec, split(wire(codec, messages), sizes)), messages)


@given(codec_and_messages(), chunk_sizes)
def test_any_buffer_type_is_accepted(
    case: tuple[Codec, list[bytes]], sizes: list[int]
) -> None:
    codec, messages = case
    data = wire(codec, messages)
    views: list[Buffer] = [memoryview(c) for c in split(data, sizes)]
    decoder = codec.decoder()
    got = [m for view in views for m in decoder.feed(bytearray(view))]
    assert all(type(m) is bytes for m in got)
    same_stream(codec, got, messages)


@given(
    codecs,
    st.lists(st.one_of(st.binary(max_size=200), ab_bytes), max_size=6),
    chunk_sizes,
)
def test_arbitrary_bytes_raise_only_the_codecs_errors(
    codec: Codec, blobs: list[bytes], sizes: list[int]
) -> None:
    decoder = codec.decoder()
    failure: RemoteProtocolError | None = None
    try:
        for chunk in split(b"".join(blobs), sizes):
            decoder.feed(chunk)
        decoder.eof()
    except RemoteProtocolError as exc:
        failure = exc
    if failure is not None:
        assert all(type(m) is bytes for m in failure.messages)
        # A failed decoder refuses more input, loudly.
        with pytest.raises(LocalProtocolError, match="cannot take more data"):
            decoder.feed(b"x")


@given(codec_and_messages(), st.binary(min_size=1, max_size=50))
def test_a_cut_off_frame_raises_incomplete_frame_with_its_bytes(
    case: tuple[Codec, list[bytes]], extra: bytes
) -> None:
    codec, messages = case
    assume(not isinstance(codec, Raw))
    data = wire(codec, messages)
    decoder = codec.decoder()
    assert decoder.feed(data) == messages
    try:
        completed = decoder.feed(extra)
    except FrameTooLarge:
        return
    if decoder.buffered:
        with pytest.raises(IncompleteFrame) as info:
            decoder.eof()
        assert info.value.partial == (data + extra)[-decoder.buffered :]
        assert len(info.value.partial) == decoder.buffered
    else:
        assert completed
        decoder.eof()


@pytest.mark.parametrize(
    "codec", [Raw(), LengthPrefixed(), Lines()], ids=["raw", "length", "lines"]
)
def test_a_decoder_refuses_input_after_eof(codec: Codec) -> None:
    decoder = codec.decoder()
    decoder.eof()
    ended = "decoder cannot take more data: the stream already ended"
    with pytest.raises(LocalProtocolError) as info:
        decoder.feed(b"x")
    assert str(info.value) == ended
    with pytest.raises(LocalProtocolError) as info:
        decoder.eof()
    assert str(info.value) == ended


@given(codec_and_messages(), st.sampled_from([bytearray, memoryview]))
def test_encode_gives_the_same_bytes_for_any_buffer_type(
    # Codec[Any]: typed, a Codec[bytes] encodes bytes; this is the run-time promise.
    case: tuple[Codec[Any], list[bytes]],
    buffer: type[bytearray] | type[memoryview],
) -> None:
    codec, messages = case
    for message in messages:
        encoded = codec.encode(buffer(message))
        # One buffer to write is always bytes; a list is a gather write.
        assert type(encoded) is bytes or type(encoded) is list
        assert flat(encoded) == flat(codec.encode(message))


@pytest.mark.parametrize("buffer", [bytearray, memoryview])
@pytest.mark.parametrize(
    ("codec", "message"),
    [
        (Raw(), b"ab"),
        (LengthPrefixed(), b"ab"),
        (Lines(), b"ab"),
        (Lines(delimiter=b"\r\n", keep_delimiter=True), b"ab\r\n"),
    ],
)
def test_a_buffer_of_any_type_encodes_and_decodes_as_bytes(
    codec: Codec[Any], message: bytes, buffer: type[bytearray] | type[memoryview]
) -> None:
    encoded = codec.encode(buffer(message))
    assert type(encoded) is bytes
    assert encoded == codec.encode(message)
    decoded = codec.decoder().feed(buffer(encoded))
    assert decoded == [message]
    assert type(decoded[0]) is bytes


# ------------------------------------------------------- LengthPrefixed


@pytest.mark.parametrize("header_size", HEADER_SIZES)
@pytest.mark.parametrize("byteorder", BYTE_ORDERS)
def test_length_header_layout(
    header_size: Literal[1, 2, 4, 8], byteorder: Literal["big", "little"]
) -> None:
    codec = LengthPrefixed(header_size=header_size, byteorder=byteorder)
    header = (3).to_bytes(header_size, byteorder)
    assert flat(codec.encode(b"abc")) == header + b"abc"
    assert flat(codec.encode(b"")) == bytes(header_size)


@pytest.mark.parametrize("header_size", HEADER_SIZES)
def test_frames_come_out_whole_wherever_the_stream_is_cut(
    header_size: Literal[1, 2, 4, 8],
) -> None:
    # Every way to cut the stream in three, so that a cut falls in every
    # header and payload, next to empty, short and max_size frames.
    codec = LengthPrefixed(header_size=header_size, max_size=9)
    messages = [b"", b"a", b"", b"bcd", b"e" * 9, b""]
    data = wire(codec, messages)
    for first, second in itertools.combinations(range(len(data) + 1), 2):
        chunks = [data[:first], data[first:second], data[second:]]
        assert decode(codec, chunks) == messages, chunks


def test_default_max_size_fits_the_header() -> None:
    assert LengthPrefixed(header_size=1).max_size == 255
    assert LengthPrefixed(header_size=2).max_size == 65535
    assert LengthPrefixed().max_size == DEFAULT_MAX_FRAME_SIZE
    with pytest.raises(ValueError, match="does not fit a 2-byte header"):
        LengthPrefixed(header_size=2, max_size=65536)
    with pytest.raises(ValueError, match="header_size"):
        LengthPrefixed(header_size=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be positive"):
        LengthPrefixed(max_size=0)


@pytest.mark.parametrize("before", [[], [b"ok"]], ids=["first", "after-a-frame"])
def test_oversize_header_is_refused_before_its_payload_is_buffered(
    before: list[bytes],
) -> None:
    codec = LengthPrefixed(max_size=1000)
    decoder = codec.decoder()
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(wire(codec, before) + (1001).to_bytes(4, "big") + b"x" * 500)
    assert (info.value.size, info.value.limit) == (1001, 1000)
    assert info.value.messages == before  # nothing valid is lost
    assert decoder.buffered == 0


def test_oversize_header_split_across_chunks_is_refused_at_once() -> None:
    decoder = LengthPrefixed(max_size=1000).decoder()
    assert decoder.feed(b"\x00\x00") == []
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(b"\xff\xff")
    assert (info.value.size, info.value.limit) == (0xFFFF, 1000)
    assert decoder.buffered <= 4


def test_huge_frame_never_buffers_past_the_limit() -> None:
    limit = 64 * 1024
    codec = LengthPrefixed(max_size=limit)
    decoder = codec.decoder()
    frame = flat(codec.encode(b"y" * limit))
    # The largest legal frame, fed in small pieces, is held but no more.
    for chunk in split(frame[:-1], [1000]):
        assert decoder.feed(chunk) == []
        assert decoder.buffered <= 4 + limit
    assert decoder.feed(frame[-1:]) == [b"y" * limit]
    assert decoder.buffered == 0


def test_large_payload_is_a_gather_write_without_copying() -> None:
    codec = LengthPrefixed()
    payload = bytearray(GATHER_THRESHOLD)
    encoded = codec.encode(payload)
    assert isinstance(encoded, list)
    assert encoded[1] is payload
    assert isinstance(codec.encode(b"small"), bytes)


def test_encode_refuses_an_oversize_message() -> None:
    with pytest.raises(LocalProtocolError, match="larger than max_size 4"):
        LengthPrefixed(max_size=4).encode(b"12345")


@pytest.mark.timeout(60)
def test_large_frame_byte_by_byte_is_linear() -> None:
    # A decoder that copied or re-parsed its buffer per chunk would take
    # minutes here (2**20 chunks over a buffer of up to 2**20 bytes).
    size = 2**20
    codec = LengthPrefixed(max_size=size)
    decoder = codec.decoder()
    data = flat(codec.encode(bytes(size)))
    feed = decoder.feed
    out = [m for i in range(len(data)) for m in feed(data[i : i + 1])]
    assert out == [bytes(size)]


# -------------------------------------------------- Delimited and Lines


def test_lines_strip_or_keep_the_line_ending() -> None:
    assert Lines().decoder().feed(b"a\nb\r\n\n") == [b"a", b"b\r", b""]
    crlf = Lines(delimiter=b"\r\n").decoder()
    assert crlf.feed(b"a\r\nb\nc\r") == [b"a"]
    assert crlf.feed(b"\n") == [b"b\nc"]
    kept = Lines(keep_delimiter=True).decoder()
    assert kept.feed(b"a\n\nb") == [b"a\n", b"\n"]


def test_lines_refuse_other_delimiters() -> None:
    with pytest.raises(ValueError, match="line ends with"):
        Lines(delimiter=b"\0")
    assert isinstance(Lines(), Delimited)


@pytest.mark.parametrize("delimiter", [b"", "x"])
def test_delimited_needs_non_empty_bytes(delimiter: object) -> None:
    with pytest.raises(ValueError, match="non-empty bytes"):
        Delimited(delimiter=delimiter)  # type: ignore[arg-type]


def test_delimiter_split_across_chunks() -> None:
    decoder = Delimited(delimiter=b"\r\n\r\n").decoder()
    assert decoder.feed(b"head\r\n") == []
    assert decoder.feed(b"\r") == []
    assert decoder.feed(b"\nbody\r\n\r\n") == [b"head", b"body"]


def test_self_overlapping_delimiter_ends_at_its_first_match() -> None:
    codec = Delimited(delimiter=b"aba")
    assert codec.decoder().feed(b"xababa") == [b"x"]
    # b"ab" + b"aba" would read as b"" then garbage, so it cannot be sent.
    with pytest.raises(LocalProtocolError, match="contains the delimiter"):
        codec.encode(b"ab")
    assert flat(codec.encode(b"abb")) == b"abbaba"


def test_encode_refuses_what_the_peer_would_split_or_refuse() -> None:
    codec = Lines(max_length=3)
    with pytest.raises(LocalProtocolError, match="at byte 1"):
        codec.encode(b"a\nb")
    with pytest.raises(LocalProtocolError, match="longer than max_length 3"):
        codec.encode(b"abcd")
    kept = Lines(keep_delimiter=True)
    with pytest.raises(LocalProtocolError, match="must end with the delimiter"):
        kept.encode(b"no newline")
    with pytest.raises(LocalProtocolError, match="must end with the delimiter"):
        kept.encode(b"two\nlines\n")
    assert kept.encode(b"one\n") == b"one\n"


def test_long_message_is_a_gather_write() -> None:
    message = b"x" * GATHER_THRESHOLD
    assert Lines().encode(message) == [message, b"\n"]


@pytest.mark.parametrize("delimiter", [b"\n", b"\r\n", b"<END>"])
def test_a_line_growing_past_the_limit_is_refused_before_it_is_buffered(
    delimiter: bytes,
) -> None:
    limit = 1000
    decoder = Delimited(delimiter=delimiter, max_length=limit).decoder()
    fed = 0
    failure: FrameTooLarge | None = None
    for _ in range(10_000):  # bounded: the error comes at byte ~limit
        try:
            decoder.feed(b"z" * 7)
        except FrameTooLarge as exc:
            failure = exc
            break
        fed += 7
        assert decoder.buffered < limit + len(delimiter)
    assert failure is not None
    assert fed <= limit + len(delimiter)
    assert failure.limit == limit
    assert failure.size > limit


def test_a_line_at_the_limit_is_accepted_byte_by_byte() -> None:
    codec = Delimited(delimiter=b"<END>", max_length=10)
    line = b"z" * 10
    assert decode(codec, split(line + b"<END>", [1])) == [line]
    with pytest.raises(FrameTooLarge):
        decode(codec, split(line + b"z<END>", [1]))


def test_oversize_line_in_the_middle_keeps_the_lines_before_it() -> None:
    decoder = Lines(max_length=3, keep_delimiter=True).decoder()
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(b"ab\ncd\ntoo long\nef\n")
    assert info.value.messages == [b"ab\n", b"cd\n"]
    assert info.value.size == len(b"too long")


def test_eof_inside_a_line_carries_the_partial_line() -> None:
    decoder = Lines().decoder()
    assert decoder.feed(b"done\nhalf") == [b"done"]
    with pytest.raises(IncompleteFrame) as info:
        decoder.eof()
    assert info.value.partial == b"half"
    with pytest.raises(LocalProtocolError, match="ended"):
        decoder.feed(b"more")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("delimiter", [b"\n", b"\r\n"])
def test_long_line_byte_by_byte_is_linear(delimiter: bytes) -> None:
    # A decoder that re-scanned or copied its buffer per chunk would move
    # 2**41 bytes here and run for minutes; a linear one takes a second.
    # (At 2**20, such a copy per chunk still finished in 40 s.)
    size = 2**21
    decoder = Lines(delimiter=delimiter, max_length=size).decoder()
    feed = decoder.feed
    for _ in range(size):
        assert not feed(b"q")
    assert feed(delimiter) == [b"q" * size]


@st.composite
def delimited_stream(draw: st.DrawFn) -> tuple[Delimited, bytes]:
    """A delimited codec and a stream rich in its delimiter and pieces of it."""
    codec = draw(delimited())
    d = codec.delimiter
    piece = st.sampled_from([d, d[:1], d[1:], d[:-1], b"a", b"b", b"\r", b"x" * 9])
    return codec, b"".join(draw(st.lists(piece, max_size=40)))


@given(delimited_stream(), chunk_sizes)
def test_delimited_decoding_is_bytes_split_whatever_the_chunking(
    case: tuple[Delimited, bytes], sizes: list[int]
) -> None:
    codec, stream = case
    delimiter, limit = codec.delimiter, codec.max_length
    *parts, rest = stream.split(delimiter)
    # Decoding stops at the first message longer than the limit, or at an
    # unfinished one that cannot end within it.
    stop = next((i for i, part in enumerate(parts) if len(part) > limit), None)
    expected = [p + delimiter if codec.keep_delimiter else p for p in parts[:stop]]
    decoder = codec.decoder()
    got: list[bytes] = []
    failure: FrameTooLarge | None = None
    try:
        for chunk in split(stream, sizes):
            got += decoder.feed(chunk)
    except FrameTooLarge as exc:
        failure = exc
    if failure is None:
        assert stop is None
        assert len(rest) < limit + len(delimiter)
        assert decoder.buffered == len(rest)
    else:
        assert stop is not None or len(rest) >= limit + len(delimiter)
        assert failure.limit == limit
        assert failure.size > limit
        got += failure.messages
    assert got == expected


@pytest.mark.parametrize(
    ("delimiter", "first", "second", "message", "left"),
    [
        (b"\r\n", b"ab", b"c\r\nd", b"abc", b"d"),
        (b"abc", b"xxa", b"bcy", b"xx", b"y"),
        # b"aaa" matches twice in b"aa" + b"aa": the first match counts.
        (b"aaa", b"xaa", b"aab", b"x", b"ab"),
    ],
)
@pytest.mark.parametrize("keep", [False, True])
def test_a_delimiter_across_two_chunks_ends_the_message_where_it_starts(
    delimiter: bytes,
    first: bytes,
    second: bytes,
    message: bytes,
    left: bytes,
    keep: bool,
) -> None:
    decoder = Delimited(delimiter=delimiter, keep_delimiter=keep).decoder()
    if keep:
        message += delimiter
    assert decoder.feed(first) == []
    assert decoder.feed(second) == [message]
    with pytest.raises(IncompleteFrame) as info:
        decoder.eof()
    assert info.value.partial == left


@pytest.mark.parametrize("delimiter", [b"\n", b"\r\n", b"<END>"])
def test_a_run_too_long_to_end_within_the_limit_is_refused_at_once(
    delimiter: bytes,
) -> None:
    # limit + len(delimiter) - 1 bytes may still be a whole message plus
    # the start of its delimiter; one byte more cannot be.
    limit = 10
    longest = b"z" * (limit + len(delimiter) - 1)
    codec = Delimited(delimiter=delimiter, max_length=limit)
    assert codec.decoder().feed(longest) == []
    decoder = codec.decoder()
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(b"ok" + delimiter + longest + b"z")
    assert info.value.size == limit + len(delimiter)
    assert info.value.limit == limit
    assert info.value.messages == [b"ok"]


def test_a_message_whose_delimiter_arrives_in_two_chunks_is_checked() -> None:
    decoder = Delimited(delimiter=b"<E>", max_length=3).decoder()
    assert decoder.feed(b"abcd<") == []
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(b"E>")
    assert (info.value.size, info.value.limit, info.value.messages) == (4, 3, [])


def test_a_message_at_the_limit_before_an_oversize_one_is_kept() -> None:
    decoder = Lines(max_length=3).decoder()
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(b"abc\ntoolong\n")
    assert (info.value.size, info.value.limit) == (7, 3)
    assert info.value.messages == [b"abc"]


def test_encode_accepts_a_message_of_max_length_and_an_empty_kept_one() -> None:
    assert Lines(max_length=3).encode(b"abc") == b"abc\n"
    kept = Lines(max_length=3, keep_delimiter=True)
    assert kept.encode(b"abc\n") == b"abc\n"
    assert kept.encode(b"\n") == b"\n"


@pytest.mark.parametrize(
    ("delimiter", "message", "at"),
    [
        (b"\r\n", b"\r\nx", 0),
        (b"\r\n", b"a\r\nb", 1),
        # The message's tail and the delimiter after it hold a delimiter
        # that starts inside the message: the peer would cut there.
        (b"aa", b"xa", 1),
        (b"aba", b"ab", 0),
        (b"abab", b"zab", 1),
    ],
)
def test_encode_refuses_a_message_holding_the_delimiter_and_says_where(
    delimiter: bytes, message: bytes, at: int
) -> None:
    with pytest.raises(LocalProtocolError) as info:
        Delimited(delimiter=delimiter).encode(message)
    assert str(info.value) == (
        f"message contains the delimiter {delimiter!r} at byte {at}"
    )


def test_encode_with_keep_delimiter_says_where_the_delimiter_must_be() -> None:
    with pytest.raises(LocalProtocolError) as info:
        Lines(keep_delimiter=True).encode(b"a\nb")
    assert str(info.value) == (
        "message must end with the delimiter b'\\n' and contain it nowhere else"
    )


# ------------------------------------------------------------------ Raw


def test_raw_passes_chunks_and_splits_oversize_ones() -> None:
    decoder = Raw(max_size=4).decoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"abc") == [b"abc"]
    assert decoder.feed(memoryview(b"0123456789")) == [b"0123", b"4567", b"89"]
    assert decoder.buffered == 0
    decoder.eof()
    assert Raw().encode(bytearray(b"x")) == b"x"


def test_codecs_are_frozen_values() -> None:
    assert LengthPrefixed(header_size=2) == LengthPrefixed(header_size=2)
    assert hash(Lines()) == hash(Lines())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Lines().max_length = 1  # type: ignore[misc]
