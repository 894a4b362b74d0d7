from __future__ import annotations

from typing import Any

import attrs
import pytest

from aiosock.core.limits import (
    DEFAULT_HIGH_WATER,
    DEFAULT_LOW_WATER,
    DEFAULT_MAX_FRAME_SIZE,
    Limits,
    OverflowPolicy,
)


def test_defaults_are_the_documented_constants() -> None:
    limits = Limits()
    assert limits.max_frame_size == DEFAULT_MAX_FRAME_SIZE
    assert (limits.write_high_water, limits.write_low_water) == (
        DEFAULT_HIGH_WATER,
        DEFAULT_LOW_WATER,
    )
    assert limits.idle_timeout is None
    assert limits.read_timeout is None
    assert limits.max_connections is None
    assert limits.datagram_overflow is OverflowPolicy.DROP_NEWEST
    assert limits.datagram_receive_buffer is None  # the kernel's default


def test_limits_are_frozen_keyword_only_values() -> None:
    with pytest.raises(TypeError):
        Limits(1024)  # type: ignore[call-arg]
    limits = Limits(read_size=4096)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        limits.read_size = 1  # type: ignore[misc]
    assert attrs.evolve(limits, read_size=8192).read_size == 8192
    assert limits == Limits(read_size=4096)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_frame_size": 0}, "max_frame_size must be positive"),
        ({"read_size": -1}, "read_size must be positive"),
        ({"write_high_water": -1}, "write_high_water must not be negative"),
        ({"write_low_water": -1}, "write_low_water must not be negative"),
        ({"write_high_water": 10, "write_low_water": 11}, "above write_high_water"),
        ({"idle_timeout": 0}, "idle_timeout must be positive or None"),
        ({"read_timeout": -0.5}, "read_timeout must be positive or None"),
        ({"read_timeout": float("nan")}, "read_timeout must be positive or None"),
        ({"max_connections": 0}, "max_connections must be positive"),
        ({"read_high_water": 0}, "read_high_water must be positive"),
        ({"close_timeout": 0}, "close_timeout must be positive"),
        ({"datagram_queue": 0}, "datagram_queue must be positive"),
        ({"datagram_receive_buffer": 0}, "datagram_receive_buffer must be positive"),
    ],
)
def test_nonsense_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"read_size": 1.5},
        {"datagram_overflow": "drop-newest"},
        {"idle_timeout": "1"},
        {"close_timeout": None},
        {"datagram_receive_buffer": 65536.0},
    ],
)
def test_wrong_types_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        Limits(**changes)


def test_zero_water_marks_and_equal_marks_are_legal() -> None:
    # High water 0 means "wait for every byte to leave"; it is strict, not wrong.
    assert Limits(write_high_water=0, write_low_water=0).write_high_water == 0
    assert Limits(write_high_water=5, write_low_water=5).write_low_water == 5


def test_the_smallest_legal_values_are_accepted() -> None:
    limits = Limits(
        max_frame_size=1,
        read_size=1,
        read_high_water=1,
        max_connections=1,
        datagram_queue=1,
        datagram_receive_buffer=1,
        idle_timeout=0.5,
        read_timeout=0.5,
        close_timeout=0.5,
    )
    assert (limits.max_frame_size, limits.datagram_queue) == (1, 1)
    assert (limits.idle_timeout, limits.read_timeout) == (0.5, 0.5)
