"""Import heavy modules on first use, so role processes start fast."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule(ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._real: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._real is None:
            self._real = importlib.import_module(self.__name__)
        return getattr(self._real, attr)


def lazy_module(name: str) -> ModuleType:
    """A stand-in for ``import name`` that imports it on the first attribute access."""
    return _LazyModule(name)
