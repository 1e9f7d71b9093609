"""httpx, imported without its command-line client.

httpx's ``__init__`` imports ``httpx._main`` (the ``httpx`` command), which imports click and pygments
before it gives up for want of rich: 40 ms of every pull, for a tool ocibox never runs. A
placeholder module registered under that name first keeps the import from happening.
"""

from __future__ import annotations

import sys
import types


def _no_cli() -> None:
    raise SystemExit("ocibox imports httpx without its command-line client; run the httpx package's own")


if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    _placeholder = types.ModuleType("httpx._main", "placeholder: ocibox does not use httpx's command line")
    _placeholder.main = _no_cli  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _placeholder

import httpx as httpx  # noqa: E402  (after the placeholder, on purpose)

__all__ = ["httpx"]
