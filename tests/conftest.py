"""Test configuration shared by every test module.

Every async test runs once per event loop, with the ids ``[asyncio]`` and
``[uvloop]``; where uvloop is not installed its runs are skipped, so the
gap shows in the report instead of vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import settings

from aiosock.aio.loops import loop_factory

pytest_plugins = ["pytester"]

# No deadline: this machine is small and shared, and speed is measured in
# benchmarks/, never asserted by a test.
settings.register_profile("aiosock", deadline=None)
settings.load_profile("aiosock")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _new_uvloop() -> asyncio.AbstractEventLoop:
    # aiosock's one place that chooses loops; it raises without uvloop.
    try:
        factory = loop_factory("uvloop")
    except RuntimeError:
        pytest.skip("uvloop is not installed")
    return factory()


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": _new_uvloop}


def _open_sockets() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own fd
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                found.add(fd)
    return found


@pytest.fixture
def open_sockets() -> Callable[[], set[str]]:
    """A function giving the socket descriptors this process holds now.

    Sockets only: other files come and go (a loop or a plugin may open
    /dev/null once, on first use).
    """
    return _open_sockets


@pytest.fixture
def abstract_name() -> str:
    """An abstract Unix socket name for one test, new on every run.

    Abstract names belong to the network namespace, not to a directory: two
    runs on one host share them, and pids repeat across pid namespaces (two
    containers), so a fixed name or one made of the pid can collide. Derive
    more names from this one (``f"{abstract_name}-slow"``).
    """
    return f"aiosock-test-{secrets.token_hex(8)}"


@pytest.fixture
def raw_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A plain Unix datagram socketpair, both ends blocking with a timeout
    of 10 s (generous: the machine is shared), so that a lost datagram
    fails a test instead of hanging it."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.settimeout(10.0)
    right.settimeout(10.0)
    with left, right:
        yield left, right


def _free_udp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def free_udp_port() -> Callable[[str], int]:
    """A function giving a UDP port of a loopback ``host`` that nobody is
    bound to now: the kernel's pick, released. A datagram sent there is
    refused (ICMP port unreachable) until someone binds it.
    """
    return _free_udp_port


@pytest.fixture
async def two_family_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A host name with a loopback address of each IP family, IPv4 first,
    as the running loop's resolver answers it.

    Most machines' ``localhost`` is such a name, but not every one's (some
    have no ``::1`` for it): this one does not depend on ``/etc/hosts``.
    The answer honours ``family``, as a real resolver does.
    """
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo
    name = "two-families.aiosock.test"

    async def getaddrinfo(
        host: Any, port: Any, *, family: int = 0, **options: Any
    ) -> list[tuple[Any, ...]]:
        if host != name:
            return await resolve(host, port, family=family, **options)
        answers = [
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port)),
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0)),
        ]
        found = [answer for answer in answers if family in (0, answer[0])]
        if not found:
            raise socket.gaierror(socket.EAI_FAMILY, "no address of that family")
        return found

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return name


@pytest.fixture
async def ipv4_only_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A host name with only an IPv4 loopback address, for both resolvers.

    Answers as a real resolver does: asked for IPv6 it has nothing, unless
    ``AI_V4MAPPED`` asks for the IPv4 address mapped into IPv6. Whether
    this machine's ``localhost`` has an IPv6 address does not matter.
    """
    name = "ipv4-only.aiosock.test"

    def answers(host: Any, port: Any, family: int, flags: int) -> list[Any] | None:
        if host != name:
            return None
        if family in (0, socket.AF_INET):
            return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port))]
        if family == socket.AF_INET6 and flags & socket.AI_V4MAPPED:
            mapped = ("::ffff:127.0.0.1", port, 0, 0)
            return [(socket.AF_INET6, socket.SOCK_DGRAM, 17, "", mapped)]
        raise socket.gaierror(socket.EAI_ADDRFAMILY, "no address of that family")

    blocking = socket.getaddrinfo

    def getaddrinfo(
        host: Any,
        port: Any,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        found = answers(host, port, family, flags)
        if found is None:
            return blocking(host, port, family, type, proto, flags)
        return found

    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo

    async def loop_getaddrinfo(
        host: Any, port: Any, *, family: int = 0, flags: int = 0, **options: Any
    ) -> list[Any]:
        found = answers(host, port, family, flags)
        if found is None:
            return await resolve(host, port, family=family, flags=flags, **options)
        return found

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(loop, "getaddrinfo", loop_getaddrinfo)
    return name
