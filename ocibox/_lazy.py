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


def import_pathlib() -> None:
    """Import pathlib without urllib.parse: pathlib takes one function of it, for ``Path.as_uri()``
    (which ocibox never calls), and urllib.parse imports ipaddress: ~2 ms of every command, about a
    tenth of a warm ``ocibox ps``. pathlib gets a stand-in that imports the real function on first
    use; the real module is the one any later import gets. The entry points call it before anything
    imports pathlib (``ocibox --help`` imports neither)."""
    if "pathlib" in sys.modules or "urllib.parse" in sys.modules:
        return
    import types

    def quote_from_bytes(*args: object, **kwargs: object) -> str:
        from urllib.parse import quote_from_bytes as real

        return real(*args, **kwargs)  # type: ignore[arg-type]

    stand_in = types.ModuleType("urllib.parse")
    stand_in.quote_from_bytes = quote_from_bytes  # type: ignore[attr-defined]
    sys.modules["urllib.parse"] = stand_in
    try:
        import pathlib  # noqa: F401
    finally:
        if sys.modules.get("urllib.parse") is stand_in:
            del sys.modules["urllib.parse"]

