"""One string form for every socket aiosock opens, parsed into frozen values.

=================================  ==========================  =============
form                               meaning                     kind
=================================  ==========================  =============
``tcp://127.0.0.1:8000``           TCP over IPv4               stream
``tcp://[::1]:8000``               TCP over IPv6               stream
``tcp://localhost:8000``           TCP, name resolved later    stream
``tcp://:8000``                    TCP on every interface      stream
``unix:///run/app.sock``           Unix socket at a path       stream
``unix:@name``                     Linux abstract namespace    stream
``udp://0.0.0.0:5353``             UDP over IPv4               datagram
``udp://[::]:5353``                UDP over IPv6               datagram
``unixgram:///run/log.sock``       Unix datagram at a path     datagram
``unixgram:@name``                 Linux abstract namespace    datagram
``fd://3``                         an inherited socket         (the socket's)
=================================  ==========================  =============

``str(address)`` gives the canonical form back, so
``str(parse_address(s)) == s`` for every canonical ``s``. IP literals are
canonicalised (``[::0:1]`` becomes ``[::1]``); host names are kept as given
and resolved only when a socket is opened. Bad strings raise
:class:`ValueError` naming the part that is wrong.
"""

from __future__ import annotations

# The C module, not ``socket``: socket.py imports selectors (for sendfile),
# and the core must load no I/O machinery. Only constants are used.
import _socket
import enum
import ipaddress
import re
from typing import ClassVar

import attrs

__all__ = [
    "Address",
    "AddressFamily",
    "FdAddress",
    "SocketKind",
    "TCPAddress",
    "UDPAddress",
    "UnixAddress",
    "UnixDatagramAddress",
    "from_sockaddr",
    "is_ip_literal",
    "parse_address",
]


class AddressFamily(enum.IntEnum):
    """The socket family an address needs; equal to ``socket.AF_*``."""

    #: Decided when the name is resolved, or every family (``tcp://:PORT``).
    AF_UNSPEC = _socket.AF_UNSPEC
    AF_INET = _socket.AF_INET
    AF_INET6 = _socket.AF_INET6
    AF_UNIX = _socket.AF_UNIX


class SocketKind(enum.IntEnum):
    """Stream or datagram; equal to ``socket.SOCK_STREAM`` or ``SOCK_DGRAM``."""

    SOCK_STREAM = _socket.SOCK_STREAM
    SOCK_DGRAM = _socket.SOCK_DGRAM


# sockaddr_un.sun_path is 108 bytes on Linux; a path needs its terminating
# NUL and an abstract name its leading one, so 107 bytes are usable.
MAX_UNIX_PATH = 107

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _canonical_host(host: str) -> str:
    """Canonicalise an IP literal, check a host name, keep ``""`` (every one)."""
    if not host:
        return host
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    # A name whose last label is numeric would be read as a (bad) IPv4
    # address by resolvers, so refuse it here rather than resolve it.
    if not _HOSTNAME.fullmatch(host) or host.rstrip(".").rpartition(".")[2].isdigit():
        raise ValueError(f"host {host!r} is neither an IP address nor a host name")
    return host


def _check_port(_: object, __: attrs.Attribute[int], port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")


@attrs.frozen(kw_only=True)
class _InetAddress:
    """An IP host and port; ``host`` is empty for every interface."""

    scheme: ClassVar[str]
    kind: ClassVar[SocketKind]

    host: str = attrs.field(converter=_canonical_host)
    port: int = attrs.field(validator=_check_port)

    @property
    def family(self) -> AddressFamily:
        """AF_INET or AF_INET6 for a literal; AF_UNSPEC for a name or ``""``."""
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return AddressFamily.AF_UNSPEC
        return AddressFamily.AF_INET6 if ip.version == 6 else AddressFamily.AF_INET

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@attrs.frozen(kw_only=True, cache_hash=True)
class TCPAddress(_InetAddress):
    """A TCP host and port (``tcp://HOST:PORT``)."""

    scheme = "tcp"
    kind = SocketKind.SOCK_STREAM


@attrs.frozen(kw_only=True, cache_hash=True)
class UDPAddress(_InetAddress):
    """A UDP host and port (``udp://HOST:PORT``)."""

    scheme = "udp"
    kind = SocketKind.SOCK_DGRAM


def _check_unix_path(instance: _UnixAddressBase, _: object, path: str) -> None:
    what = "abstract name" if instance.abstract else "unix path"
    if not path:
        raise ValueError(f"empty {what}")
    if "\0" in path:
        raise ValueError(f"{what} {path!r} contains a NUL byte")
    if not instance.abstract and not path.startswith("/"):
        raise ValueError(f"unix path {path!r} is relative; it must start with '/'")
    size = len(path.encode("utf-8", "surrogateescape"))
    if size > MAX_UNIX_PATH:
        raise ValueError(
            f"{what} is {size} bytes, longer than the {MAX_UNIX_PATH} bytes "
            "a Unix socket address holds"
        )


@attrs.frozen(kw_only=True)
class _UnixAddressBase:
    """A filesystem path, or with ``abstract`` a Linux abstract-namespace name."""

    scheme: ClassVar[str]
    kind: ClassVar[SocketKind]
    family: ClassVar[AddressFamily] = AddressFamily.AF_UNIX

    path: str = attrs.field(validator=_check_unix_path)
    abstract: bool = False

    def __str__(self) -> str:
        if self.abstract:
            return f"{self.scheme}:@{self.path}"
        return f"{self.scheme}://{self.path}"


@attrs.frozen(kw_only=True, cache_hash=True)
class UnixAddress(_UnixAddressBase):
    """A Unix stream socket (``unix:///path`` or ``unix:@name``)."""

    scheme = "unix"
    kind = SocketKind.SOCK_STREAM


@attrs.frozen(kw_only=True, cache_hash=True)
class UnixDatagramAddress(_UnixAddressBase):
    """A Unix datagram socket (``unixgram:///path`` or ``unixgram:@name``)."""

    scheme = "unixgram"
    kind = SocketKind.SOCK_DGRAM


def _check_fd(_: object, __: attrs.Attribute[int], fd: int) -> None:
    if fd < 0:
        raise ValueError(f"fd {fd} is negative")


@attrs.frozen(kw_only=True)
class FdAddress:
    """An already open socket by its descriptor (``fd://N``), e.g. from systemd.

    Its family and kind are the socket's own, known only once it is adopted,
    so both are None here.
    """

    scheme: ClassVar[str] = "fd"
    kind: ClassVar[None] = None
    family: ClassVar[None] = None

    fd: int = attrs.field(validator=_check_fd)

    def __str__(self) -> str:
        return f"fd://{self.fd}"


Address = TCPAddress | UDPAddress | UnixAddress | UnixDatagramAddress | FdAddress

_INET: dict[str, type[TCPAddress] | type[UDPAddress]] = {
    "tcp": TCPAddress,
    "udp": UDPAddress,
}
_UNIX: dict[str, type[UnixAddress] | type[UnixDatagramAddress]] = {
    "unix": UnixAddress,
    "unixgram": UnixDatagramAddress,
}
_SCHEMES = ", ".join([*_INET, *_UNIX, "fd"])
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986, section 3.1


def parse_address(text: str) -> Address:
    """Parse one address string; raise :class:`ValueError` naming what is wrong."""
    if not isinstance(text, str):
        raise TypeError(f"address must be a str, not {type(text).__name__}")
    scheme, sep, rest = text.partition(":")
    known = scheme in _INET or scheme in _UNIX or scheme == "fd"
    if not sep or not _SCHEME.fullmatch(scheme) or (rest.isdecimal() and not known):
        # "127.0.0.1:80" and "localhost:80" are host:port without a scheme.
        raise ValueError(f"address {text!r} has no scheme (expected {_SCHEMES})")
    try:
        if scheme in _INET:
            host, port = _split_host_port(_after_slashes(rest, scheme))
            return _INET[scheme](host=host, port=port)
        if scheme in _UNIX:
            return _parse_unix(_UNIX[scheme], rest)
        if scheme == "fd":
            return FdAddress(fd=_parse_int(_after_slashes(rest, scheme), "fd"))
    except ValueError as exc:
        raise ValueError(f"bad address {text!r}: {exc}") from None
    raise ValueError(f"bad address {text!r}: unknown scheme {scheme!r} ({_SCHEMES})")


def _after_slashes(rest: str, scheme: str) -> str:
    if not rest.startswith("//"):
        raise ValueError(f"expected '{scheme}://' before the address")
    return rest[2:]


def _split_host_port(authority: str) -> tuple[str, int]:
    if "/" in authority or "?" in authority or "#" in authority:
        raise ValueError("unexpected path, query or fragment after the port")
    if authority.startswith("["):
        host, bracket, tail = authority[1:].partition("]")
        if not bracket:
            raise ValueError("'[' of an IPv6 literal is never closed")
        if not _is_ipv6(host):
            raise ValueError(f"{host!r} in brackets is not an IPv6 address")
        if not tail.startswith(":"):
            raise ValueError("missing port after the IPv6 literal")
        port_text = tail[1:]
    else:
        host, colon, port_text = authority.rpartition(":")
        if not colon:
            raise ValueError("missing port (expected HOST:PORT)")
        if ":" in host:
            raise ValueError(f"IPv6 literal {host!r} must be written in brackets")
    return host, _parse_int(port_text, "port")


def _parse_int(text: str, what: str) -> int:
    if not text:
        raise ValueError(f"missing {what}")
    if text.startswith("-") and text[1:].isdecimal():
        raise ValueError(f"{what} {text} is negative")
    # isdecimal() alone would accept non-ASCII digits such as '٣'.
    if not (text.isascii() and text.isdecimal()):
        raise ValueError(f"{what} {text!r} is not a number")
    value = int(text)
    if what == "port" and value > 65535:
        raise ValueError(f"port {value} is above 65535")
    return value


def is_ip_literal(host: str) -> bool:
    """True for an IPv4 or IPv6 address written out, False for a host name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _parse_unix(
    cls: type[UnixAddress] | type[UnixDatagramAddress], rest: str
) -> UnixAddress | UnixDatagramAddress:
    if rest.startswith("@"):
        return cls(path=rest[1:], abstract=True)
    if rest.startswith("//"):
        return cls(path=rest[2:])
    raise ValueError(
        f"expected '{cls.scheme}:///absolute/path' or '{cls.scheme}:@name'"
    )


def from_sockaddr(
    family: int, kind: int, sockaddr: str | bytes | tuple[object, ...]
) -> Address | None:
    """The address of what ``getsockname()``/``getpeername()`` returned.

    ``family`` and ``kind`` are the socket's. Returns None for an unnamed
    Unix socket (a client that never bound), which has no address to give.
    """
    if family in (AddressFamily.AF_INET, AddressFamily.AF_INET6):
        assert isinstance(sockaddr, tuple)
        host, port = str(sockaddr[0]), int(sockaddr[1])  # type: ignore[call-overload]
        if family == AddressFamily.AF_INET6 and len(sockaddr) > 3 and sockaddr[3]:
            host = f"{host.partition('%')[0]}%{sockaddr[3]}"
        inet = TCPAddress if kind == SocketKind.SOCK_STREAM else UDPAddress
        return inet(host=host, port=port)
    if family == AddressFamily.AF_UNIX:
        assert isinstance(sockaddr, str | bytes)
        name = (
            sockaddr.decode("utf-8", "surrogateescape")
            if isinstance(sockaddr, bytes)
            else sockaddr
        )
        if not name:
            return None
        unix = UnixAddress if kind == SocketKind.SOCK_STREAM else UnixDatagramAddress
        if name.startswith("\0"):
            return unix(path=name[1:], abstract=True)
        return unix(path=name)
    raise ValueError(f"no aiosock address for socket family {family}")
