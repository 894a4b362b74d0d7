"""The RESP request codec of examples/mqd, held to Redis's own reading.

Two ports of Redis's C, kept literal and slow, are the reference:
``sdssplitargs`` (src/sds.c) for inline words, and ``RedisReader``,
``processInputBuffer`` with its inline and multibulk halves
(src/networking.c), fed one byte at a time. The codec must agree with them
on any input and any chunking.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mqd.resp import MAX_ARGS, MAX_BULK, MAX_INLINE, ProtocolError, Resp, split_inline

from aiosock import Encoded, IncompleteFrame, LocalProtocolError, RemoteProtocolError

Command = list[bytes]

# ------------------------------------------------------------ the reference

_SPACES = b" \t\n\x0b\x0c\r"  # isspace() in the C locale
_HEX = b"0123456789abcdefABCDEF"


def _hex(c: int) -> bool:
    return c in _HEX  # and so not NUL, the end of the C string


_C_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


def sdssplitargs(line: bytes) -> list[bytes] | None:
    """src/sds.c's sdssplitargs, one byte at a time, on a C string."""
    s = line + b"\0"
    p = 0
    words: list[bytes] = []
    while True:
        while s[p] and s[p] in _SPACES:
            p += 1
        if not s[p]:
            return words
        inq = insq = done = False
        current = bytearray()
        while not done:
            c = s[p]
            if inq:
                if c == 0x5C and s[p + 1] == 0x78 and _hex(s[p + 2]) and _hex(s[p + 3]):
                    current.append(int(s[p + 2 : p + 4], 16))
                    p += 3
                elif c == 0x5C and s[p + 1]:
                    p += 1
                    current.append(_C_ESCAPES.get(s[p], s[p]))
                elif c == 0x22:
                    if s[p + 1] and s[p + 1] not in _SPACES:
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    current.append(c)
            elif insq:
                if c == 0x5C and s[p + 1] == 0x27:
                    p += 1
                    current.append(0x27)
                elif c == 0x27:
                    if s[p + 1] and s[p + 1] not in _SPACES:
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    current.append(c)
            elif c in b" \n\r\t\0":
                done = True
            elif c == 0x22:
                inq = True
            elif c == 0x27:
                insq = True
            else:
                current.append(c)
            if s[p]:
                p += 1
        words.append(bytes(current))


def string2ll(s: bytes) -> int | None:
    """src/util.c's string2ll."""
    if not s or len(s) >= 21:
        return None
    if s == b"0":
        return 0
    p, negative = 0, False
    if s[0] == ord("-"):
        negative, p = True, 1
        if p == len(s):
            return None
    if not ord("1") <= s[p] <= ord("9"):
        return None
    value = s[p] - ord("0")
    p += 1
    while p < len(s) and ord("0") <= s[p] <= ord("9"):
        value = value * 10 + s[p] - ord("0")
        if value >= 2**64:
            return None
        p += 1
    if p < len(s):
        return None
    if negative:
        return -value if value <= 2**63 else None
    return value if value < 2**63 else None


class RedisReader:
    """processInputBuffer and its two halves, one byte at a time.

    Redis looks for line ends with strchr, which stops at a NUL; the codec
    does not, and neither does this port (it uses bytes.find).
    """

    def __init__(self, codec: Resp) -> None:
        self.codec = codec
        self.query = bytearray()
        self.reqtype = ""
        self.multibulklen = 0
        self.bulklen = -1
        self.argv: Command = []
        self.error: bytes | None = None

    def feed(self, data: bytes) -> list[Command]:
        out: list[Command] = []
        for byte in data:
            if self.error is not None:
                break
            self.query.append(byte)
            self.process(out)
        return out

    def process(self, out: list[Command]) -> None:
        while self.query and self.error is None:
            if not self.reqtype:
                self.reqtype = "multibulk" if self.query[0] == ord("*") else "inline"
            ready = self.inline() if self.reqtype == "inline" else self.multibulk()
            if not ready:
                break
            if self.argv:
                out.append(self.argv)
            self.reqtype, self.argv = "", []

    def fail(self, text: bytes) -> bool:
        self.error = b"Protocol error: " + text
        return False

    def inline(self) -> bool:
        query = self.query
        newline = query.find(b"\n")
        if newline < 0:
            if len(query) > self.codec.max_inline:
                return self.fail(b"too big inline request")
            return False
        end = newline
        if newline != 0 and query[newline - 1] == ord("\r"):
            end -= 1
        words = sdssplitargs(bytes(query[:end]))
        if words is None:
            return self.fail(b"unbalanced quotes in request")
        del query[: newline + 1]
        self.argv = words
        return True

    def multibulk(self) -> bool:
        query = self.query
        if self.multibulklen == 0:
            newline = query.find(b"\r")
            if newline < 0:
                if len(query) > self.codec.max_inline:
                    return self.fail(b"too big mbulk count string")
                return False
            if newline > len(query) - 2:
                return False
            count = string2ll(bytes(query[1:newline]))
            if count is None or count > self.codec.max_args:
                return self.fail(b"invalid multibulk length")
            del query[: newline + 2]
            if count <= 0:
                return True
            self.multibulklen = count
        while self.multibulklen:
            if self.bulklen == -1:
                newline = query.find(b"\r")
                if newline < 0:
                    if len(query) > self.codec.max_inline:
                        return self.fail(b"too big bulk count string")
                    break
                if newline > len(query) - 2:
                    break
                if query[0] != ord("$"):
                    got = b" " if query[0] in b"\r\n" else bytes(query[:1])
                    return self.fail(b"expected '$', got '%s'" % got)
                size = string2ll(bytes(query[1:newline]))
                if size is None or size < 0 or size > self.codec.max_bulk:
                    return self.fail(b"invalid bulk length")
                del query[: newline + 2]
                self.bulklen = size
            if len(query) < self.bulklen + 2:
                break
            self.argv.append(bytes(query[: self.bulklen]))
            del query[: self.bulklen + 2]
            self.bulklen = -1
            self.multibulklen -= 1
        return self.multibulklen == 0


# ---------------------------------------------------------------- helpers


def flat(encoded: Encoded) -> bytes:
    return encoded if isinstance(encoded, bytes) else b"".join(encoded)


def wire(commands: Iterable[Command], codec: Resp | None = None) -> bytes:
    codec = codec or Resp()
    return b"".join(flat(codec.encode(command)) for command in commands)


def chunks(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, any value)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run(codec: Resp, pieces: Sequence[bytes]) -> tuple[list[Command], bytes | None]:
    """Feed ``pieces``: the commands decoded, and the fault's text if any."""
    decoder = codec.decoder()
    out: list[Command] = []
    for piece in pieces:
        try:
            out += decoder.feed(piece)
        except ProtocolError as exc:
            out += exc.messages
            return out, exc.text
    return out, None


def decode_one(data: bytes, codec: Resp | None = None) -> list[Command]:
    decoder = (codec or Resp()).decoder()
    out = decoder.feed(data)
    decoder.eof()
    return out


def fault(data: bytes, codec: Resp | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        (codec or Resp()).decoder().feed(data)
    return info.value


# ------------------------------------------------------------- multibulk

LPUSH = b"*3\r\n$5\r\nLPUSH\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"


def test_defaults_are_redis_limits() -> None:
    codec = Resp()
    assert codec.max_bulk == MAX_BULK == 512 * 1024 * 1024
    assert codec.max_args == MAX_ARGS == 1024 * 1024
    assert codec.max_inline == MAX_INLINE == 64 * 1024
    with pytest.raises(ValueError, match="max_bulk must be positive"):
        Resp(max_bulk=0)


def test_a_multibulk_command() -> None:
    assert decode_one(LPUSH * 2) == [[b"LPUSH", b"key", b"value"]] * 2


def test_bulk_strings_are_binary_safe() -> None:
    args = [b"SET", b"a\r\nb", b"\r\n", b"", b"\0\xff*3\r\n$1\r\n", b"\r", b"\n"]
    data = wire([args, [b"PING"], args])
    assert decode_one(data) == [args, [b"PING"], args]


def test_zero_and_negative_counts_are_no_command() -> None:
    data = b"*0\r\n*-1\r\n*-42\r\n" + LPUSH + b"*0\r\n"
    decoder = Resp().decoder()
    assert decoder.feed(data) == [[b"LPUSH", b"key", b"value"]]
    assert decoder.buffered == 0
    decoder.eof()


def test_redis_skips_the_byte_after_a_line_cr_and_two_after_a_payload() -> None:
    # Redis never reads them (networking.c moves past newline + 2 and
    # bulklen + 2): what Redis runs, this runs.
    assert decode_one(b"*1\rX$4\r?PINGxy") == [[b"PING"]]
    assert decode_one(b"*2\r\n$3\r\nGETab$1\r\nk\r\n") == [[b"GET", b"k"]]


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"*x\r\n", b"invalid multibulk length"),
        (b"*\r\n", b"invalid multibulk length"),
        (b"*+1\r\n", b"invalid multibulk length"),
        (b"*01\r\n", b"invalid multibulk length"),
        (b"*-0\r\n", b"invalid multibulk length"),
        (b"* 1\r\n", b"invalid multibulk length"),
        (b"*1 \r\n", b"invalid multibulk length"),
        (b"*1\0\r\n", b"invalid multibulk length"),
        (b"*9223372036854775808\r\n", b"invalid multibulk length"),
        (b"*1\r\nx\r\n", b"expected '$', got 'x'"),
        (b"*1\r\n*1\r\n", b"expected '$', got '*'"),
        (b"*1\r\n\xff\r\n", b"expected '$', got '\xff'"),
        # Redis replaces CR and LF in an error text with spaces.
        (b"*1\r\n\r\n", b"expected '$', got ' '"),
        (b"*1\r\n\n\r\n", b"expected '$', got ' '"),
        (b"*1\r\n$\r\n", b"invalid bulk length"),
        (b"*1\r\n$-1\r\n", b"invalid bulk length"),
        (b"*1\r\n$01\r\n", b"invalid bulk length"),
        (b"*1\r\n$1x\r\n", b"invalid bulk length"),
        (b"*1\r\n$+1\r\n", b"invalid bulk length"),
        (b"*1\r\n$99999999999999999999\r\n", b"invalid bulk length"),
        (b'PING "unclosed\r\n', b"unbalanced quotes in request"),
    ],
)
def test_protocol_errors_have_redis_text(data: bytes, text: bytes) -> None:
    exc = fault(LPUSH + data)
    assert exc.text == b"Protocol error: " + text
    assert str(exc) == exc.text.decode("latin-1")
    assert isinstance(exc, RemoteProtocolError)
    assert exc.messages == [[b"LPUSH", b"key", b"value"]]


def test_a_count_above_max_args_is_an_invalid_multibulk_length() -> None:
    codec = Resp(max_args=3)
    assert decode_one(LPUSH, codec) == [[b"LPUSH", b"key", b"value"]]
    exc = fault(LPUSH + b"*4\r\n", codec)
    assert exc.text == b"Protocol error: invalid multibulk length"
    assert exc.messages == [[b"LPUSH", b"key", b"value"]]
    # With the default, the limit is 1024 * 1024 arguments.
    assert fault(b"*1048577\r\n").text == b"Protocol error: invalid multibulk length"
    decoder = Resp().decoder()
    assert decoder.feed(b"*1048576\r\n") == []
    assert decoder.buffered == len(b"*1048576\r\n")


def test_a_length_above_max_bulk_is_an_invalid_bulk_length() -> None:
    codec = Resp(max_bulk=5)
    assert decode_one(LPUSH, codec) == [[b"LPUSH", b"key", b"value"]]
    exc = fault(b"*1\r\n$6\r\n", codec)
    assert exc.text == b"Protocol error: invalid bulk length"
    # Refused from the length line, before any payload arrives.
    exc = fault(b"*1\r\n$536870913\r\n")
    assert exc.text == b"Protocol error: invalid bulk length"
    decoder = Resp().decoder()
    assert decoder.feed(b"*1\r\n$536870912\r\n") == []


@pytest.mark.parametrize(
    ("start", "text"),
    [
        (b"*", b"too big mbulk count string"),
        (b"*1\r\n$", b"too big bulk count string"),
        (b"*1\r\n", b"too big bulk count string"),
        (b"P", b"too big inline request"),
    ],
)
def test_a_line_without_its_end_in_max_inline_plus_1_bytes_is_too_big(
    start: bytes, text: bytes
) -> None:
    codec = Resp(max_inline=16)
    head = len(start) - start.rfind(b"\n") - 1  # bytes of the line in start
    line = start + b"1" * (16 - head)
    decoder = codec.decoder()
    assert decoder.feed(line) == []  # 16 bytes: it may still end
    with pytest.raises(ProtocolError) as info:
        decoder.feed(b"1")
    assert info.value.text == b"Protocol error: " + text
    # However the bytes arrive.
    for piece in (1, 5, 100):
        data = line + b"11"
        assert run(codec, chunks(data, range(0, len(data), piece))) == (
            [],
            b"Protocol error: " + text,
        )


def test_lines_of_max_inline_bytes_are_taken() -> None:
    codec = Resp(max_inline=8)
    inline = b"PING  xy"  # 8 bytes, then the \n
    assert decode_one(inline + b"\n" + b"PING xy\r\n", codec) == [
        [b"PING", b"xy"],
        [b"PING", b"xy"],
    ]
    for line in (b"PING  xyz\n", b"PING xyz\r\n"):  # the \r counts
        assert fault(line, codec).text == b"Protocol error: too big inline request"
    count = b"*" + b"0" * 7  # 8 bytes, then \r: a count line, invalid but not too big
    exc = fault(count + b"\r\n", codec)
    assert exc.text == b"Protocol error: invalid multibulk length"
    exc = fault(count + b"0\r\n", codec)
    assert exc.text == b"Protocol error: too big mbulk count string"


def test_the_default_inline_limit_is_64_kib() -> None:
    word = b"x" * (64 * 1024 - 5)
    assert decode_one(b"ECHO " + word + b"\n") == [[b"ECHO", word]]
    exc = fault(b"ECHO " + word + b"x\n")
    assert exc.text == b"Protocol error: too big inline request"


# ----------------------------------------------------------------- inline


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"PING", [b"PING"]),
        (b"  set  a\tb  ", [b"set", b"a", b"b"]),
        (b"", []),
        (b" \t\x0b\x0c", []),
        (b'set k "hello world"', [b"set", b"k", b"hello world"]),
        (b'"\\x41\\x4a\\n\\r\\t\\b\\a\\"\\\\\\q"', [b'AJ\n\r\t\b\a"\\q']),
        (b'"\\x4" "\\xzz"', [b"x4", b"xzz"]),
        (b"'it\\'s' 'a\\nb'", [b"it's", b"a\\nb"]),
        (b"\"\" ''", [b"", b""]),
        (b'ab"c d" e', [b"abc d", b"e"]),
        (b"a\x0bb", [b"a\x0bb"]),  # \v and \f separate words only around them
        (b"a\x0cb \x0cc", [b"a\x0cb", b"c"]),
        (b"a\rb", [b"a", b"b"]),
        (b'"x"\x0by', [b"x", b"y"]),
        (b"PING\0 ignored", [b"PING"]),  # a C string ends at NUL
        (b'"unclosed', None),
        (b"'unclosed", None),
        (b'"closed"x', None),
        (b"'closed'x", None),
        (b"'a\\'", None),
        (b'a"', None),
        (b'"a\0"', None),
    ],
)
def test_split_inline_is_sdssplitargs(line: bytes, words: list[bytes] | None) -> None:
    assert split_inline(line) == words
    assert sdssplitargs(line) == words


@given(st.binary(max_size=40))
def test_split_inline_agrees_with_sdssplitargs_on_any_bytes(line: bytes) -> None:
    assert split_inline(line) == sdssplitargs(line)


_INLINE_BYTES = st.lists(
    st.sampled_from([bytes([c]) for c in b"ab \t\r\x0b\x0c\"'\\x4fn\0\xff"]),
    max_size=30,
).map(b"".join)


@given(_INLINE_BYTES)
def test_split_inline_agrees_with_sdssplitargs_on_quoting(line: bytes) -> None:
    assert split_inline(line) == sdssplitargs(line)


def test_inline_commands() -> None:
    data = b'PING\r\nset k "a b"\nGET k\r\n'
    assert decode_one(data) == [[b"PING"], [b"set", b"k", b"a b"], [b"GET", b"k"]]


def test_empty_inline_lines_are_skipped() -> None:
    decoder = Resp().decoder()
    assert decoder.feed(b"\r\n\n   \r\n\t\nPING\r\n") == [[b"PING"]]
    assert decoder.buffered == 0


def test_an_inline_request_ends_at_lf_and_drops_one_cr() -> None:
    assert decode_one(b"ECHO a\r\r\n") == [[b"ECHO", b"a"]]  # the first \r ends a word
    assert decode_one(b'ECHO "a\r"\r\n') == [[b"ECHO", b"a\r"]]
    assert decode_one(b"ECHO a\rb\n") == [[b"ECHO", b"a", b"b"]]


def test_inline_and_multibulk_mix() -> None:
    data = b"PING\r\n" + LPUSH + b"PING\n" + LPUSH
    expected = [[b"PING"], [b"LPUSH", b"key", b"value"]] * 2
    assert decode_one(data) == expected
    assert run(Resp(), chunks(data, range(0, len(data), 3))) == (expected, None)


# ------------------------------------------------------- state and framing


def test_buffered_counts_the_bytes_of_the_command_in_progress() -> None:
    data = LPUSH * 2
    decoder = Resp().decoder()
    for i, byte in enumerate(data):
        decoder.feed(bytes([byte]))
        assert decoder.buffered == (i + 1) % len(LPUSH)
    decoder = Resp().decoder()
    assert decoder.feed(LPUSH + b"*3\r\n$5\r\nLPU") == [[b"LPUSH", b"key", b"value"]]
    assert decoder.buffered == len(b"*3\r\n$5\r\nLPU")
    assert decoder.feed(b"SH\r\n$3\r\nk") == []
    assert decoder.buffered == len(b"*3\r\n$5\r\nLPUSH\r\n$3\r\nk")
    assert decoder.feed(b"ey\r\n$5\r\nvalue\r\nPI") == [[b"LPUSH", b"key", b"value"]]
    assert decoder.buffered == 2


def test_a_long_argument_in_many_reads() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB, CR LF and all
    data = wire([[b"SET", b"k", value], [b"PING"]])
    decoder = Resp().decoder()
    out: list[Command] = []
    for piece in chunks(data, range(0, len(data), 1000)):
        out += decoder.feed(piece)
        assert decoder.buffered <= len(data)
    assert out == [[b"SET", b"k", value], [b"PING"]]
    decoder.eof()


def test_eof_between_commands_is_clean() -> None:
    decoder = Resp().decoder()
    assert decoder.feed(LPUSH + b"PING\r\n*0\r\n") == [
        [b"LPUSH", b"key", b"value"],
        [b"PING"],
    ]
    decoder.eof()
    with pytest.raises(LocalProtocolError, match="the stream already ended"):
        decoder.feed(b"PING\r\n")
    with pytest.raises(LocalProtocolError):
        decoder.eof()


@pytest.mark.parametrize(
    "partial",
    [
        b"*",
        b"*3",
        b"*3\r",
        b"*3\r\n",
        b"*3\r\n$5\r\nLP",
        b"*3\r\n$5\r\nLPUSH\r",
        b"*3\r\n$5\r\nLPUSH\r\n$3\r\nkey\r\n",
        b"*3\r\n$5\r\nLPUSH\r\n$3\r\nkey\r\n$5\r\nvalue\r",
        b"PING",
        b"PING\r",
        b"  ",
    ],
)
def test_eof_inside_a_command_is_an_incomplete_frame(partial: bytes) -> None:
    decoder = Resp().decoder()
    assert decoder.feed(LPUSH + partial) == [[b"LPUSH", b"key", b"value"]]
    with pytest.raises(IncompleteFrame) as info:
        decoder.eof()
    assert info.value.partial == partial
    assert len(info.value.partial) == decoder.buffered


def test_after_a_fault_the_decoder_refuses_input() -> None:
    decoder = Resp().decoder()
    with pytest.raises(ProtocolError):
        decoder.feed(b"*x\r\n")
    with pytest.raises(LocalProtocolError, match="it already failed"):
        decoder.feed(LPUSH)
    with pytest.raises(LocalProtocolError):
        decoder.eof()


def test_feed_takes_any_buffer() -> None:
    decoder = Resp().decoder()
    assert decoder.feed(bytearray(LPUSH)) == [[b"LPUSH", b"key", b"value"]]
    assert decoder.feed(memoryview(LPUSH)[:7]) == []
    assert decoder.feed(memoryview(LPUSH)[7:]) == [[b"LPUSH", b"key", b"value"]]
    assert decoder.feed(b"") == []


def test_commands_repeated_in_a_pipeline_then_others() -> None:
    # The fast path checks a run of same-shaped commands in one go: one
    # that is not plain among them is still read right.
    odd = [b"SET", b"k\r\n", b"v"]
    for middle in ([b"GET", b"k"], odd, [b"GET", b"k" * 20000]):
        commands = [[b"GET", b"a"]] * 5 + [middle] + [[b"GET", b"b"]] * 5
        data = wire(commands)
        assert decode_one(data) == commands
        assert Resp().decoder().feed(data + b"*2\r\n$3\r\nGET") == commands
    quirk = b"*2\r\n$3\r\nGET\r\n$1\r\nkXY"  # Redis skips XY unread
    lpush = [b"LPUSH", b"key", b"value"]
    assert decode_one(LPUSH * 3 + quirk + LPUSH) == [lpush] * 3 + [
        [b"GET", b"k"],
        lpush,
    ]


# ----------------------------------------------------------------- encode


def test_encode_frames_an_array_of_bulk_strings() -> None:
    assert Resp().encode([b"LPUSH", b"key", b"value"]) == LPUSH
    assert Resp().encode([b""]) == b"*1\r\n$0\r\n\r\n"


def test_encode_gathers_long_arguments() -> None:
    value = b"v" * 5000
    encoded = Resp().encode([b"SET", b"k", value])
    assert isinstance(encoded, list)
    assert any(part is value for part in encoded)  # not copied
    assert flat(encoded) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n" + value + b"\r\n"


def test_encode_refuses_what_the_decoder_would() -> None:
    codec = Resp(max_args=2, max_bulk=3)
    for command in ([], [b"a", b"b", b"c"], [b"abcd"], [b"a", b"b" * 4000]):
        with pytest.raises(LocalProtocolError, match="a command has 1 to 2 arguments"):
            codec.encode(command)
    assert codec.encode([b"abc", b""]) == b"*2\r\n$3\r\nabc\r\n$0\r\n\r\n"


_ARGS = st.lists(st.binary(max_size=12), min_size=1, max_size=5)
_COMMANDS = st.lists(_ARGS, max_size=8)


@given(_COMMANDS)
def test_encode_round_trips(commands: list[Command]) -> None:
    assert decode_one(wire(commands)) == commands


# ------------------------------------------------------ chunking and fuzz


@given(_COMMANDS, st.lists(st.integers(min_value=0), max_size=20))
def test_decoding_does_not_depend_on_chunking(
    commands: list[Command], cuts: list[int]
) -> None:
    data = wire(commands)
    assert run(Resp(), chunks(data, cuts)) == (commands, None)


_HEADS = [b"*", b"$", b"*1\r\n", b"*2\r\n", b"$1\r\n", b"$3\r\n"]
_ENDS = [b"\r\n", b"\r", b"\n"]
_BYTES = [b"0", b"1", b"3", b"-", b"x", b" ", b'"', b"'", b"\\x41", b"\0", b"\xff"]
_WHOLE = [b"PING", b"$3\r\nGET\r\n", LPUSH, b"*3\r\n$5\r\nLPUSH\r\n"]
_TOKENS = st.sampled_from(_HEADS + _ENDS + _BYTES + _WHOLE)
_RESPISH = st.one_of(
    st.lists(_TOKENS, max_size=30).map(b"".join),
    st.lists(st.one_of(_TOKENS, st.binary(max_size=4)), max_size=20).map(b"".join),
    st.binary(max_size=60),
)
_CUTS = st.lists(st.integers(min_value=0), max_size=10)
_LIMITS = st.builds(
    Resp,
    max_bulk=st.integers(1, 8),
    max_args=st.integers(1, 4),
    max_inline=st.integers(1, 12),
)


@settings(max_examples=500)
@given(_RESPISH, _CUTS, _LIMITS)
def test_the_codec_reads_as_redis_reads_a_byte_at_a_time(
    data: bytes, cuts: list[int], codec: Resp
) -> None:
    reader = RedisReader(codec)
    expected = reader.feed(data)
    assert run(codec, chunks(data, cuts)) == (expected, reader.error)


@settings(max_examples=300)
@given(_RESPISH, _CUTS)
def test_the_codec_reads_as_redis_with_its_default_limits(
    data: bytes, cuts: list[int]
) -> None:
    reader = RedisReader(Resp())
    expected = reader.feed(data)
    assert run(Resp(), chunks(data, cuts)) == (expected, reader.error)


@settings(max_examples=300)
@given(st.binary(max_size=200), _CUTS, _LIMITS)
def test_any_bytes_raise_only_remote_protocol_errors(
    data: bytes, cuts: list[int], codec: Resp
) -> None:
    decoder = codec.decoder()
    decoded: list[Command] = []
    failure: RemoteProtocolError | None = None
    try:
        for piece in chunks(data, cuts):
            decoded += decoder.feed(piece)
        decoder.eof()
    except RemoteProtocolError as exc:  # anything else fails the test
        failure = exc
    if isinstance(failure, ProtocolError):
        decoded += failure.messages  # what the failing call decoded before
    assert decoded == RedisReader(codec).feed(data)
    if isinstance(failure, IncompleteFrame):
        assert failure.partial


def test_the_micro_benchmark_runs() -> None:
    from benchmarks import resp_micro

    for name, measure in resp_micro.rows(commands=600, pipeline=4).items():
        assert measure() > 0, name
