"""Lazy package attributes: a package's public names load their module on first use.

``ocibox run`` of a cached image must start in a few tens of ms, so a package ``__init__``
must not import every module of the package. Each package lists its names once, for mypy
under ``TYPE_CHECKING`` and for the runtime in the table given here.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package + "." + table[name]`` on first use."""

    def __getattr__(name: str) -> Any:
        mod = table.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        __import__(f"{package}.{mod}")  # not importlib: its import costs ~0.6 ms of every command
        value = getattr(sys.modules[f"{package}.{mod}"], name)
        sys.modules[package].__dict__[name] = value
        return value

    return __getattr__
