"""``aiosock.__all__`` is the public API: it must be exactly right."""

from __future__ import annotations

import doctest
import types
from pathlib import Path

import pytest

import aiosock
import aiosock.aio
import aiosock.core

README = Path(__file__).parent.parent / "README.md"


def test_every_listed_name_exists() -> None:
    for module in (aiosock, aiosock.core):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module.__name__}.__all__ lists missing {missing}"
        assert len(set(module.__all__)) == len(module.__all__)


def test_nothing_public_is_left_out() -> None:
    for module in (aiosock, aiosock.core):
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        assert public <= set(module.__all__), public - set(module.__all__)


def test_the_package_offers_all_of_the_core() -> None:
    assert set(aiosock.core.__all__) <= set(aiosock.__all__)


def test_the_asyncio_layer_is_loaded_on_first_use() -> None:
    assert aiosock.serve is aiosock.aio.serve
    assert "serve" in dir(aiosock)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        aiosock.nonsense  # noqa: B018


def test_readme_examples_run() -> None:
    result = doctest.testfile(str(README), module_relative=False)
    assert result.attempted > 0
    assert result.failed == 0
