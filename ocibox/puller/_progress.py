"""What a pull tells the user: tqdm bars on a terminal (one per layer and a total with ETA,
on stderr), docker-pull-like status lines otherwise, nothing with ``--quiet``."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, TextIO


class Progress:
    """Status lines (docker's wording) on ``out``; subclasses draw bars."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def begin(self, tag: str, name: str) -> None:
        self.line(f"{tag}: Pulling from {name}")

    def layers(self, layers: list[tuple[str, int, bool]]) -> None:
        """``(short id, compressed size, already present)`` for each layer, in order."""
        for short, _size, present in layers:
            self.line(f"{short}: {'Already exists' if present else 'Pulling fs layer'}")

    def layer_bytes(self, short: str, n: int) -> None:
        pass

    def layer_exists(self, short: str) -> None:
        """Another process published the layer while we waited for its lock."""
        self.line(f"{short}: Already exists")

    def layer_done(self, short: str) -> None:
        self.line(f"{short}: Pull complete")

    def close(self) -> None:
        pass


class BarProgress(Progress):
    """tqdm bars on stderr: one per layer being downloaded, and a total with ETA."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(out)
        self._bars: dict[str, Any] = {}
        self._total: Any = None

    def layers(self, layers: list[tuple[str, int, bool]]) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        todo = [(s, n) for s, n, present in layers if not present]
        # A terminal that reports no size (a pty nobody sized, as in some CI runners) would get
        # zero-size bars, which tqdm draws as nothing: draw them 80 columns wide, 24 lines high.
        try:
            sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
        except (OSError, ValueError):
            sized = False
        width: dict[str, Any] = {"dynamic_ncols": True} if sized else {"ncols": 80, "nrows": 24}
        for short, _size, present in layers:
            if present:
                self.line(f"{short}: Already exists")
        for i, (short, size) in enumerate(todo):
            self._bars[short] = tqdm(total=size, desc=short, unit="B", unit_scale=True, unit_divisor=1024,
                                     position=i + 1, leave=False, file=sys.stderr, **width)
        if todo:
            self._total = tqdm(total=sum(n for _, n in todo), desc="total", unit="B", unit_scale=True,
                               unit_divisor=1024, position=0, leave=False, file=sys.stderr, **width)

    def layer_bytes(self, short: str, n: int) -> None:
        bar = self._bars.get(short)
        if bar is not None:
            bar.update(n)
        if self._total is not None:
            self._total.update(n)

    def layer_exists(self, short: str) -> None:
        bar = self._bars.pop(short, None)
        if bar is not None:
            if self._total is not None:
                self._total.update(max(0, bar.total - bar.n))
            bar.close()

    def layer_done(self, short: str) -> None:
        bar = self._bars.get(short)
        if bar is not None:
            bar.set_description_str(f"{short} done")

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        if self._total is not None:
            self._total.close()
        self._bars.clear()
        self._total = None


def make_progress(quiet: bool) -> Progress:
    if quiet:
        return Progress(quiet=True)
    if sys.stderr.isatty():
        return BarProgress()
    return Progress()
