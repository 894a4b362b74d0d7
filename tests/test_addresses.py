from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiosock.core.addresses import (
    MAX_UNIX_PATH,
    AddressFamily,
    FdAddress,
    SocketKind,
    TCPAddress,
    UDPAddress,
    UnixAddress,
    UnixDatagramAddress,
    from_sockaddr,
    is_ip_literal,
    parse_address,
)

STREAM, DGRAM = SocketKind.SOCK_STREAM, SocketKind.SOCK_DGRAM
INET, INET6, UNSPEC, UNIX = (
    AddressFamily.AF_INET,
    AddressFamily.AF_INET6,
    AddressFamily.AF_UNSPEC,
    AddressFamily.AF_UNIX,
)

CANONICAL = [
    ("tcp://127.0.0.1:8000", TCPAddress(host="127.0.0.1", port=8000), STREAM, INET),
    ("tcp://[::1]:8000", TCPAddress(host="::1", port=8000), STREAM, INET6),
    ("tcp://:8000", TCPAddress(host="", port=8000), STREAM, UNSPEC),
    ("tcp://localhost:0", TCPAddress(host="localhost", port=0), STREAM, UNSPEC),
    ("unix:///abs/path.sock", UnixAddress(path="/abs/path.sock"), STREAM, UNIX),
    ("unix:@name", UnixAddress(path="name", abstract=True), STREAM, UNIX),
    ("udp://0.0.0.0:5353", UDPAddress(host="0.0.0.0", port=5353), DGRAM, INET),
    ("udp://[::]:5353", UDPAddress(host="::", port=5353), DGRAM, INET6),
    ("unixgram:///abs/path", UnixDatagramAddress(path="/abs/path"), DGRAM, UNIX),
    ("unixgram:@name", UnixDatagramAddress(path="name", abstract=True), DGRAM, UNIX),
]


@pytest.mark.parametrize(("text", "expected", "kind", "family"), CANONICAL)
def test_canonical_forms_parse_and_format_back(
    text: str, expected: object, kind: SocketKind, family: AddressFamily
) -> None:
    address = parse_address(text)
    assert address == expected
    assert str(address) == text
    assert address.kind == kind
    assert address.family == family


def test_family_and_kind_are_the_socket_modules_numbers() -> None:
    # IntEnums, so they can be handed to socket.socket() as they are.
    address = parse_address("udp://[::1]:53")
    assert int(address.family or 0) == socket.AF_INET6
    assert int(address.kind or 0) == socket.SOCK_DGRAM
    for family in AddressFamily:
        assert int(family) == getattr(socket, family.name)
    for kind in SocketKind:
        assert int(kind) == getattr(socket, kind.name)


def test_fd_address_leaves_family_and_kind_to_the_socket() -> None:
    address = parse_address("fd://3")
    assert address == FdAddress(fd=3)
    assert str(address) == "fd://3"
    assert address.kind is None
    assert address.family is None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("tcp://[::0:1]:80", "tcp://[::1]:80"),
        ("tcp://[0:0:0:0:0:0:0:1]:80", "tcp://[::1]:80"),
        ("udp://[FE80::1%eth0]:53", "udp://[fe80::1%eth0]:53"),
        ("tcp://example.com.:443", "tcp://example.com.:443"),
        ("tcp://127.0.0.1:00080", "tcp://127.0.0.1:80"),
    ],
)
def test_ip_literals_and_ports_are_canonicalised(text: str, canonical: str) -> None:
    assert str(parse_address(text)) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:80", "has no scheme"),
        (":80", "has no scheme"),
        ("localhost:8080", "has no scheme"),
        ("localhost", "has no scheme"),
        ("[::1]:8000", "has no scheme"),
        ("http://host:80", "unknown scheme 'http'"),
        ("tcp:127.0.0.1:80", "expected 'tcp://'"),
        ("tcp:8000", "expected 'tcp://'"),
        ("tcp://127.0.0.1", "missing port"),
        ("tcp://127.0.0.1:", "missing port"),
        ("tcp://[::1]", "missing port after the IPv6 literal"),
        ("tcp://[::1]80", "missing port after the IPv6 literal"),
        ("tcp://host:http", "port 'http' is not a number"),
        ("tcp://host:\uff18\uff10", "port '\uff18\uff10' is not a number"),
        ("tcp://host:65536", "port 65536 is above 65535"),
        ("udp://host:99999999", "port 99999999 is above 65535"),
        ("tcp://host:-1", "port -1 is negative"),
        ("tcp://::1:80", "IPv6 literal '::1' must be written in brackets"),
        ("udp://fe80::1:53", "must be written in brackets"),
        ("tcp://[::1:80", "never closed"),
        ("tcp://[::1]:80]", "port '80]' is not a number"),
        ("tcp://[127.0.0.1]:80", "not an IPv6 address"),
        ("tcp://[host]:80", "not an IPv6 address"),
        ("tcp://256.0.0.1:80", "neither an IP address nor a host name"),
        ("tcp://bad_name:80", "neither an IP address nor a host name"),
        ("tcp://10.0.0.1.:80", "neither an IP address nor a host name"),
        ("tcp://host.123.:80", "neither an IP address nor a host name"),
        ("tcp://host:80/path", "unexpected path"),
        ("tcp://host:80?x=1", "unexpected path"),
        ("tcp://host:80#top", "unexpected path"),
        ("unix://relative.sock", "is relative"),
        ("unix:relative.sock", "expected 'unix:///absolute/path'"),
        ("unix:8000", "expected 'unix:///absolute/path'"),
        ("unix://", "empty unix path"),
        ("unix:@", "empty abstract name"),
        ("unixgram:@", "empty abstract name"),
        ("unixgram://run/x", "is relative"),
        ("unix:///a\0b", "NUL"),
        ("unix:///" + "x" * MAX_UNIX_PATH, "longer than the 107 bytes"),
        ("unix:@" + "x" * (MAX_UNIX_PATH + 1), "longer than the 107 bytes"),
        ("fd://-1", "fd -1 is negative"),
        ("fd://x", "fd 'x' is not a number"),
        ("fd://", "missing fd"),
        ("fd:3", "expected 'fd://'"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"bad address|no scheme") as info:
        parse_address(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tcp://host:80/x", "unexpected path, query or fragment after the port"),
        ("tcp://[::1:80", "'[' of an IPv6 literal is never closed"),
        ("tcp://[::1]80", "missing port after the IPv6 literal"),
        ("tcp://host", "missing port (expected HOST:PORT)"),
        (
            "unix:///" + "x" * MAX_UNIX_PATH,
            "unix path is 108 bytes, longer than the 107 bytes "
            "a Unix socket address holds",
        ),
        (
            "unixgram:@" + "x" * 200,
            "abstract name is 200 bytes, longer than the 107 bytes "
            "a Unix socket address holds",
        ),
    ],
)
def test_bad_address_messages_in_full(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="bad address") as info:
        parse_address(text)
    assert str(info.value) == f"bad address {text!r}: {reason}"


@pytest.mark.parametrize(
    "text", ["tcp://node.1X:80", "tcp://node.1X.:80", "udp://3com.example:53"]
)
def test_host_names_may_have_digits_in_their_last_label(text: str) -> None:
    assert str(parse_address(text)) == text


def test_longest_unix_path_is_accepted() -> None:
    path = "/" + "x" * (MAX_UNIX_PATH - 1)
    assert parse_address("unix://" + path) == UnixAddress(path=path)


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"^address must be a str, not bytes$"):
        parse_address(b"tcp://127.0.0.1:80")  # type: ignore[arg-type]


def test_constructors_validate_like_the_parser() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.65535"):
        TCPAddress(host="::1", port=70000)
    with pytest.raises(ValueError, match="is relative"):
        UnixAddress(path="rel")
    with pytest.raises(ValueError, match="negative"):
        FdAddress(fd=-2)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("fe80::1%2", True),
        ("localhost", False),
        ("256.0.0.1", False),
        ("", False),
    ],
)
def test_is_ip_literal_tells_addresses_from_names(host: str, expected: bool) -> None:
    assert is_ip_literal(host) is expected


def test_ports_and_descriptors_are_bounded_inclusively() -> None:
    assert TCPAddress(host="", port=0).port == 0
    assert UDPAddress(host="", port=65535).port == 65535
    assert parse_address("udp://[::1]:65535") == UDPAddress(host="::1", port=65535)
    with pytest.raises(ValueError, match=r"^port 65536 is outside 0\.\.65535$"):
        UDPAddress(host="", port=65536)
    assert FdAddress(fd=0).fd == 0
    assert parse_address("fd://0") == FdAddress(fd=0)
    with pytest.raises(ValueError, match=r"^fd -1 is negative$"):
        FdAddress(fd=-1)


def test_addresses_are_frozen_and_hashable() -> None:
    address = TCPAddress(host="127.0.0.1", port=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        address.port = 2  # type: ignore[misc]
    assert len({address, parse_address("tcp://127.0.0.1:1")}) == 1
    # Same path, different kinds of socket: different addresses.
    assert parse_address("unix:///a") != parse_address("unixgram:///a")


ports = st.integers(0, 65535)
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@given(scheme=st.sampled_from(["tcp", "udp"]), ip=ips, port=ports)
def test_any_ip_and_port_round_trip(
    scheme: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    text = f"{scheme}://{host}:{port}"
    address = parse_address(text)
    assert str(address) == text
    assert parse_address(str(address)) == address
    assert address.family == (INET6 if ip.version == 6 else INET)


path_chars = st.characters(
    codec="utf-8", exclude_characters="\0", exclude_categories=["Cs"]
)


@given(
    scheme=st.sampled_from(["unix", "unixgram"]),
    abstract=st.booleans(),
    name=st.text(path_chars, min_size=1, max_size=40),
)
def test_any_unix_name_round_trips(scheme: str, abstract: bool, name: str) -> None:
    text = f"{scheme}:@{name}" if abstract else f"{scheme}:///{name}"
    address = parse_address(text)
    assert str(address) == text
    assert parse_address(str(address)) == address


@given(st.text(max_size=30))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    try:
        address = parse_address(text)
    except ValueError:
        return
    assert parse_address(str(address)) == address


def _bound(family: int, kind: int, where: str | tuple[str, int]) -> socket.socket:
    sock = socket.socket(family, kind)
    sock.bind(where)
    return sock


def test_from_sockaddr_reads_what_a_bound_socket_reports(
    tmp_path: Path, abstract_name: str
) -> None:
    cases = [
        (
            _bound(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0)),
            "tcp://127.0.0.1:",
        ),
        (_bound(socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 0)), "udp://[::1]:"),
        (
            _bound(socket.AF_UNIX, socket.SOCK_STREAM, f"\0{abstract_name}"),
            f"unix:@{abstract_name}",
        ),
        (
            _bound(socket.AF_UNIX, socket.SOCK_DGRAM, str(tmp_path / "d")),
            f"unixgram://{tmp_path / 'd'}",
        ),
    ]
    for sock, prefix in cases:
        with sock:
            address = from_sockaddr(sock.family, sock.type, sock.getsockname())
            assert str(address).startswith(prefix)
            if isinstance(address, TCPAddress | UDPAddress):
                assert address.port == sock.getsockname()[1]


def test_an_unnamed_unix_socket_has_no_address() -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        assert from_sockaddr(sock.family, sock.type, sock.getsockname()) is None
    with pytest.raises(ValueError, match="no aiosock address"):
        from_sockaddr(socket.AF_PACKET, socket.SOCK_RAW, ("lo", 0))


@pytest.mark.parametrize("host", ["fe80::1%eth0", "fe80::1"])
def test_from_sockaddr_names_an_ipv6_scope_by_its_number(host: str) -> None:
    # The kernel's scope id, not the interface name Python may add.
    address = from_sockaddr(INET6, DGRAM, (host, 53, 0, 2))
    assert address == UDPAddress(host="fe80::1%2", port=53)


@pytest.mark.parametrize(
    ("family", "sockaddr", "expected"),
    [
        (INET6, ("::1", 80, 0, 0), TCPAddress(host="::1", port=80)),
        (INET6, ("::1", 80, 0), TCPAddress(host="::1", port=80)),
        (INET6, ("::1", 80), TCPAddress(host="::1", port=80)),
        (INET, ("127.0.0.1", 80), TCPAddress(host="127.0.0.1", port=80)),
    ],
)
def test_from_sockaddr_without_a_scope_keeps_the_host(
    family: AddressFamily, sockaddr: tuple[object, ...], expected: TCPAddress
) -> None:
    assert from_sockaddr(family, STREAM, sockaddr) == expected


def test_from_sockaddr_keeps_unix_names_that_are_not_utf8() -> None:
    # Linux names are bytes; undecodable ones survive the round trip.
    abstract = from_sockaddr(UNIX, DGRAM, b"\0aiosock-\xff")
    assert abstract == UnixDatagramAddress(path="aiosock-\udcff", abstract=True)
    path = from_sockaddr(UNIX, STREAM, b"/tmp/\xfe.sock")
    assert isinstance(path, UnixAddress)
    assert path.path == "/tmp/\udcfe.sock"
    assert path.path.encode("utf-8", "surrogateescape") == b"/tmp/\xfe.sock"
