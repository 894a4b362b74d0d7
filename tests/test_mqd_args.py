"""Redis's readings of argument bytes (mqd.args): string2ll and the
getLongFromObjectOrReply family (src/object.c), string2ull, blocking
timeouts (src/timeout.c), and the glob (stringmatchlen, src/util.c)."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mqd.args import (
    LONG_MAX,
    glob_match,
    parse_count,
    parse_cursor,
    parse_int,
    parse_long,
    parse_timeout,
)
from mqd.replies import Err

NOT_INTEGER = Err(b"ERR value is not an integer or out of range")

# ---------------------------------------------------------------- integers


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"0", 0),
        (b"-1", -1),
        (b"9223372036854775807", 2**63 - 1),
        (b"-9223372036854775808", -(2**63)),
        (b"9223372036854775808", None),
        (b"-9223372036854775809", None),
        (b"99999999999999999999", None),
        (b"-0", None),
        (b"01", None),
        (b"+1", None),
        (b" 1", None),
        (b"1 ", None),
        (b"", None),
        (b"-", None),
        (b"1.5", None),
        (b"1" * 5000, None),
    ],
)
def test_parse_int_is_string2ll(text: bytes, value: int | None) -> None:
    assert parse_int(text) == value


def test_parse_long_texts_are_redis_own() -> None:
    assert parse_long(b"-7") == -7
    assert parse_long(b"x") == NOT_INTEGER
    assert parse_long(b"9223372036854775808") == NOT_INTEGER  # past 64 bits
    assert parse_long(b"0", 1, 10) == Err(
        b"ERR value is out of range, value must between 1 and 10"
    )
    assert parse_long(b"10", 1, 10) == 10


def test_parse_long_message_replaces_both_texts() -> None:
    # As Redis's msg argument does: "abc" and an out-of-range number alike.
    for text in (b"abc", b"0", b"9223372036854775808"):
        assert parse_long(text, 1, 5, b"count should be greater than 0") == Err(
            b"ERR count should be greater than 0"
        )


def test_parse_count_is_zero_or_more() -> None:
    must_be_positive = Err(b"ERR value is out of range, must be positive")
    assert parse_count(b"0") == 0
    assert parse_count(str(LONG_MAX).encode()) == LONG_MAX
    assert parse_count(b"-1") == must_be_positive
    assert parse_count(b"x") == must_be_positive
    assert parse_count(b"-1", b"COUNT can't be negative") == Err(
        b"ERR COUNT can't be negative"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"0", 0),
        (b"17", 17),
        (b"18446744073709551615", 2**64 - 1),
        (b"18446744073709551616", None),
        (b"-1", None),  # string2ll reads it: negative, refused
        (b"-01", 2**64 - 1),  # strtoull reads it, and negates
        (b" 7", 7),
        (b"+7", 7),
        (b"007", 7),
        (b"7 ", None),
        (b"", None),
        (b"abc", None),
    ],
)
def test_parse_cursor_is_string2ull(text: bytes, value: int | None) -> None:
    assert parse_cursor(text) == value


# ---------------------------------------------------------------- timeouts

NOW = 1_000_000  # milliseconds since the epoch


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("1.5", 1.5),
        ("0.001", 0.001),
        ("0.0001", 0.001),  # rounded up to the millisecond
        ("1e-400", 0.001),  # tiny, not zero: Redis reads a long double
        ("-0.0001", 0.0),  # rounds up to 0, for ever, as in Redis
        ("+2", 2.0),
        (".5", 0.5),
        ("3.", 3.0),
        ("1e1", 10.0),
        ("0x10", 16.0),  # strtold reads hex
        ("0x.8", 0.5),
    ],
)
def test_timeouts_in_seconds_with_decimals(text: str, seconds: float) -> None:
    assert parse_timeout(text.encode(), NOW) == seconds


NOT_A_FLOAT = Err(b"ERR timeout is not a float or out of range")
NEGATIVE = Err(b"ERR timeout is negative")
OUT_OF_RANGE = Err(b"ERR timeout is out of range")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1", NEGATIVE),
        ("-0.001", NEGATIVE),
        ("-inf", NEGATIVE),
        ("abc", NOT_A_FLOAT),
        ("", NOT_A_FLOAT),
        (" 1", NOT_A_FLOAT),
        ("1 ", NOT_A_FLOAT),
        ("1e", NOT_A_FLOAT),
        ("nan", NOT_A_FLOAT),
        ("1_000", NOT_A_FLOAT),
        ("0x", NOT_A_FLOAT),
        ("1" * 5120, NOT_A_FLOAT),
        ("inf", OUT_OF_RANGE),
        ("1e400", OUT_OF_RANGE),
        ("0x7FFFFFFFFFFFFF", OUT_OF_RANGE),  # Redis's own test of this
        ("9223372036854775.807", OUT_OF_RANGE),  # fits, but not with now added
    ],
)
def test_bad_timeouts(text: str, expected: Err) -> None:
    assert parse_timeout(text.encode(), NOW) == expected


def test_the_deadline_must_fit_with_now_added() -> None:
    assert parse_timeout(b"9223372036854775.807", 0) == 9223372036854775.807
    assert parse_timeout(b"9223372036854775.807", 1) == OUT_OF_RANGE


# ---------------------------------------------------------------- glob

# Redis's KEYS documentation, its tests (tests/unit/keyspace.tcl,
# tests/unit/scan.tcl, tests/unit/pubsub.tcl), and the corners of
# stringmatchlen. The answers are those of Redis's own C function,
# compiled (with unsigned char) and run on these inputs.
GLOB_CASES = [
    (b"h?llo", b"hello", True),
    (b"h?llo", b"hallo", True),
    (b"h?llo", b"hllo", False),
    (b"h*llo", b"hllo", True),
    (b"h*llo", b"heeeello", True),
    (b"h*llo", b"hellox", False),
    (b"h[ae]llo", b"hello", True),
    (b"h[ae]llo", b"hallo", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hbllo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hallo", True),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[a-b]llo", b"hcllo", False),
    (b"foo*", b"foo_a", True),
    (b"foo*", b"key_x", False),
    (b"{a}*", b"{a}x", True),
    (b"*{b}*", b"{b}a", True),
    (b"*{b}*", b"{a}b", False),
    (b"key:1??", b"key:123", True),
    (b"key:1??", b"key:12", False),
    (b"key:1??", b"key:1234", False),
    (b"*", b"", False),
    (b"", b"", True),
    (b"", b"a", False),
    (b"**", b"", False),
    (b"?", b"", False),
    (b"*", b"x", True),
    (b"a*", b"a", True),
    (b"*a", b"a", True),
    (b"**a", b"a", True),
    (b"a**", b"a", True),
    (b"a*b", b"a", False),
    (b"a?", b"a", False),
    (b"*a*", b"bab", True),
    (b"*a*b", b"aaab", True),
    (b"*ab*ab", b"abab", True),
    (b"a*b*c", b"abcbc", True),
    (b"[", b"a", False),
    (b"[", b"[", False),
    (b"[abc", b"a", True),
    (b"[abc", b"d", False),
    (b"[^", b"a", True),
    (b"[^abc", b"d", True),
    (b"[a-]", b"a", True),
    (b"[a-]", b"-", False),
    (b"[a-]", b"]", True),
    (b"[a-]", b"b", False),
    (b"[]]", b"]", False),
    (b"[]]", b"a", False),
    (b"[]a]", b"a", False),
    (b"[^]", b"a", True),
    (b"[z-a]", b"m", True),
    (b"[z-a]", b"A", False),
    (b"[-a]", b"-", True),
    (b"[-a]", b"b", False),
    (b"[\\]]", b"]", True),
    (b"[\\]]", b"\\", False),
    (b"[\\", b"\\", True),
    (b"[a\\-z]", b"b", False),
    (b"[a\\-z]", b"-", True),
    (b"\\*", b"*", True),
    (b"\\*", b"a", False),
    (b"\\?", b"?", True),
    (b"\\?", b"a", False),
    (b"\\[a]", b"[a]", True),
    (b"\\", b"\\", True),
    (b"a\\", b"a\\", True),
    (b"\\a", b"a", True),
    (b"[^a-c]", b"d", True),
    (b"[^a-c]", b"b", False),
    (b"a*" * 20 + b"b", b"a" * 40, False),
    (b"[a-\xff]", b"\x80", True),  # bytes compare unsigned
    (b"h[b-a]llo", b"hallo", True),  # a reversed range is swapped
    (b"h\\*llo", b"h*llo", True),
    (b"h\\*llo", b"hello", False),
    (b"**", b"x", True),
    (b"a*", b"", False),
    (b"a*b*c", b"aXXbYYc", True),
    (b"a*b*c", b"aXXbYY", False),
    (b"a*a*a*a*a*a*a*a*b", b"a" * 60, False),  # and quickly
    (b"[abc", b"b", True),
    (b"[^", b"x", True),
    (b"x\\", b"x\\", True),  # a trailing escape is itself
    (b"news.*", b"news.tech", True),
    (b"news.*", b"sport.news", False),
]


@pytest.mark.parametrize(("pattern", "string", "expected"), GLOB_CASES)
def test_glob_matches_as_redis(pattern: bytes, string: bytes, expected: bool) -> None:
    assert glob_match(pattern, string) is expected


def test_glob_abusive_patterns_end_quickly() -> None:
    # keyspace.tcl "Regression for pattern matching very long nested loops".
    assert not glob_match(b"*?" * 50_000, b"a" * 50_000)
    # Past 1000 nested stars Redis stops matching, but a last star matches.
    assert glob_match(b"a*" * 1000 + b"a", b"a" * 1200)
    assert not glob_match(b"a*" * 1001 + b"a", b"a" * 1200)
    assert glob_match(b"a*" * 1001, b"a" * 1200)


@given(
    st.text(alphabet="ab*?", max_size=8).map(str.encode),
    st.text(alphabet="ab", min_size=1, max_size=10).map(str.encode),
)
def test_glob_agrees_with_fnmatch_on_stars_and_marks(
    pattern: bytes, string: bytes
) -> None:
    # Without classes or escapes the two globs mean the same (for a string
    # that is not empty: Redis's "*" does not match "").
    expected = fnmatch.fnmatchcase(string.decode(), pattern.decode())
    assert glob_match(pattern, string) is expected
