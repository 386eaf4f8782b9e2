"""depcache's pytest plugin, registered as ``depcache`` (``pytest11`` entry point).

Fixtures:

* ``memory_manager``: a fresh in-memory default manager for the test, every manager and
  in-memory store forgotten after it (see :func:`depcache.testing.memory_managers`).

This module imports nothing from depcache until a fixture is used, so having depcache
installed costs other test suites nothing (importing ``depcache`` loads redis-py). The helpers
themselves are in :mod:`depcache.testing`; disable the plugin with ``-p no:depcache``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from depcache import CacheManager

__all__ = ["memory_manager"]


@pytest.fixture
def memory_manager() -> Iterator[CacheManager]:
    """A fresh in-memory manager, the default one (``@cache_with_deps()`` without a name uses
    it); managers created by name during the test are in-memory too. Forgotten afterwards."""
    from depcache.testing import memory_managers  # noqa: PLC0415  # only when used: see above

    with memory_managers() as manager:
        yield manager
