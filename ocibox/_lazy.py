"""Lazy package attributes: a package's public names load their module on first use.

``ocibox run`` of a cached image must start in a few tens of ms, so a package ``__init__``
must not import every module of the package. Each package lists its names once, for mypy
under ``TYPE_CHECKING`` and for the runtime in the table given here.
"""

from __future__ import annotations

import os
import sys
import types

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


class _Deferred(types.ModuleType):
    """A stand-in for a module that a stdlib module imports but uses only inside functions: the first
    attribute read imports the real module (by then the stand-in is gone from sys.modules)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's own questions (__path__, __spec__...)
            raise AttributeError(name)
        __import__(self.__name__)
        return getattr(sys.modules[self.__name__], name)


def _cache_info(*fields: int) -> tuple[int, ...]:
    return fields


def _lru_cache(maxsize: int | None = 128, typed: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``functools.lru_cache(maxsize, typed)`` as functools makes it (its C ``_lru_cache_wrapper``),
    for the functools stand-in: pathlib decorates with it at import, and the sqlite3 module takes it
    at import for every connection's statement cache."""
    from _functools import _lru_cache_wrapper  # type: ignore[import-not-found]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        wrapper = _lru_cache_wrapper(function, maxsize if maxsize is None else max(maxsize, 0), typed, _cache_info)
        wrapper.__wrapped__ = function
        return wrapper  # type: ignore[no-any-return]

    return decorate


def import_deferring(name: str, deferred: tuple[str, ...]) -> types.ModuleType:
    """Import module ``name`` with stand-ins (``_Deferred``) for the modules in ``deferred`` that it
    imports but uses only inside its functions; any later import of those gets the real module.
    functools' stand-in has a real ``lru_cache``."""
    if name in sys.modules:
        return sys.modules[name]
    made = [n for n in deferred if n not in sys.modules]
    for n in made:
        sys.modules[n] = _Deferred(n)
    functools = sys.modules.get("functools")
    if isinstance(functools, _Deferred):
        functools.lru_cache = _lru_cache  # type: ignore[attr-defined]
    parse = sys.modules.get("urllib.parse")
    if isinstance(parse, _Deferred):  # pathlib takes this one name at import (from ... import)
        def quote_from_bytes(*a: Any, **k: Any) -> str:
            from urllib.parse import quote_from_bytes as real

            return real(*a, **k)

        parse.quote_from_bytes = quote_from_bytes  # type: ignore[attr-defined]
    # Windows-only modules some of them try in a try/except (ntpath: nt, five times, and _winapi): each
    # miss searched every path entry. None in sys.modules makes the import fail at once, as it would.
    absent = [n for n in ("nt", "_winapi") if n not in sys.modules and os.name != "nt"]
    for n in absent:
        sys.modules[n] = None  # type: ignore[assignment]
    try:
        __import__(name)
    finally:
        for n in made:
            if isinstance(sys.modules.get(n), _Deferred):
                del sys.modules[n]
        for n in absent:
            if sys.modules.get(n) is None:
                del sys.modules[n]
    return sys.modules[name]


def import_pathlib() -> None:
    """Import pathlib without the modules it uses only inside functions: re and fnmatch (glob and
    match), warnings, urllib.parse (``as_uri``; it imports ipaddress) and functools (an lru_cache
    of glob's selectors). With enum, collections and operator behind them they cost ~8 ms of every
    command here, a sixth of a warm ``ocibox run``; pathlib itself ~1 ms. The entry points call it
    before anything imports pathlib (``ocibox --help`` imports neither)."""
    import_deferring("pathlib", ("re", "fnmatch", "warnings", "urllib.parse", "functools"))
