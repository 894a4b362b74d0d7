from __future__ import annotations

import errno

import pytest

from aiosock.core import errors
from aiosock.core.addresses import UDPAddress
from aiosock.core.errors import (
    AiosockError,
    BrokenResourceError,
    ClosedResourceError,
    EndOfStream,
    FrameTooLarge,
    IncompleteFrame,
    LocalProtocolError,
    RemoteProtocolError,
    translate_os_error,
)


def test_the_tree_says_who_is_at_fault() -> None:
    assert issubclass(FrameTooLarge, RemoteProtocolError)
    assert issubclass(IncompleteFrame, RemoteProtocolError)
    for cls in (
        RemoteProtocolError,
        LocalProtocolError,
        ClosedResourceError,
        BrokenResourceError,
        EndOfStream,
    ):
        assert issubclass(cls, AiosockError)
    # The peer's fault and ours never overlap.
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)


def test_errors_carry_their_data() -> None:
    too_large = FrameTooLarge(size=10, limit=4, messages=[b"before"])
    assert (too_large.size, too_large.limit, too_large.messages) == (10, 4, [b"before"])
    assert "10 bytes" in str(too_large)
    assert "limit of 4" in str(too_large)
    incomplete = IncompleteFrame(b"abc")
    assert incomplete.partial == b"abc"
    assert incomplete.messages == []
    assert "3 bytes" in str(incomplete)


def test_every_error_is_listed() -> None:
    assert set(errors.__all__) == {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    } | {"translate_os_error"}


CLOSED = "the socket was already closed"


@pytest.mark.parametrize(
    ("exc", "expected", "message"),
    [
        (OSError(errno.EBADF, "Bad file descriptor"), ClosedResourceError, CLOSED),
        (OSError(errno.ENOTSOCK, "Not a socket"), ClosedResourceError, CLOSED),
        (
            ConnectionResetError(errno.ECONNRESET, "reset"),
            BrokenResourceError,
            "the connection broke: reset",
        ),
        (
            BrokenPipeError(errno.EPIPE, "Broken pipe"),
            BrokenResourceError,
            "the connection broke: Broken pipe",
        ),
        (
            TimeoutError(errno.ETIMEDOUT, "timed out"),
            BrokenResourceError,
            "the connection broke: timed out",
        ),
        # No strerror to give: the type says what broke.
        (
            OSError("no errno at all"),
            BrokenResourceError,
            "the connection broke: OSError",
        ),
    ],
)
def test_os_errors_are_translated_by_who_is_at_fault(
    exc: OSError, expected: type[AiosockError], message: str
) -> None:
    translated = translate_os_error(exc)
    assert type(translated) is expected
    # A closed socket is this program's doing: its message blames no network.
    assert str(translated) == message


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EBADF, "Bad file descriptor"),
        OSError(errno.ENOTSOCK, "Not a socket"),
    ],
)
def test_a_closed_descriptor_reads_as_already_closed(exc: OSError) -> None:
    assert str(translate_os_error(exc)) == "the socket was already closed"


def test_the_message_names_the_sockets_address_where_given() -> None:
    address = UDPAddress(host="127.0.0.1", port=5000)
    closed = translate_os_error(OSError(errno.EBADF, "gone"), address=address)
    assert str(closed) == "the socket of udp://127.0.0.1:5000 was already closed"
    reset = ConnectionResetError(errno.ECONNRESET, "reset")
    broken = translate_os_error(reset, address=address)
    assert isinstance(broken, BrokenResourceError)
    assert str(broken) == "the connection of udp://127.0.0.1:5000 broke: reset"


def test_a_broken_connection_names_its_reason_or_else_the_error_type() -> None:
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    assert str(translate_os_error(reset)) == (
        "the connection broke: Connection reset by peer"
    )
    assert str(translate_os_error(ConnectionResetError())) == (
        "the connection broke: ConnectionResetError"
    )


def test_every_error_aiosock_defines_derives_from_aiosock_error() -> None:
    defined = [
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    ]
    assert len(defined) >= 10
    assert all(issubclass(cls, AiosockError) for cls in defined)
    # Where a second base helps callers, it stays.
    assert issubclass(errors.DatagramTooLarge, LocalProtocolError)
    assert issubclass(errors.DatagramTooLarge, ValueError)
    assert issubclass(errors.LoopUnavailable, RuntimeError)
    assert issubclass(errors.DatagramTruncated, errors.DatagramError)
    assert issubclass(errors.DatagramError, RemoteProtocolError)


def test_no_module_of_aiosock_defines_an_error_of_its_own() -> None:
    import importlib
    import pkgutil

    import aiosock

    for info in pkgutil.walk_packages(aiosock.__path__, "aiosock."):
        if info.name in (errors.__name__, "aiosock.__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, BaseException):
                assert value.__module__ in (errors.__name__, "builtins"), (
                    f"{info.name}.{name} is an error outside core/errors.py"
                )
