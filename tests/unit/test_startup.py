"""What keeps a command's start cheap: the stand-ins of ocibox._lazy (pathlib and the sqlite3 module
without re, enum, functools, collections...) and ocibox._contextlib, which must behave as contextlib."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocibox import _contextlib

HEAVY = ("re", "enum", "functools", "collections", "contextlib", "json", "signal", "fnmatch", "warnings",
         "urllib.parse", "ipaddress", "typing", "dataclasses")


def fresh(code: str) -> str:
    """``code`` run by a new interpreter, its stdout."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_pathlib_without_its_function_only_imports(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    out = fresh(
        "import sys\n"
        "from ocibox._lazy import import_pathlib\n"
        "import_pathlib()\n"
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))\n"
        "from pathlib import Path\n"
        f"p = Path({str(tmp_path)!r})\n"
        "print([x.name for x in p.glob('*.txt')], Path('/a/b').match('*/b'), Path('/x y').as_uri())\n"
        "import re, functools\n"
        "print(type(sys.modules['re']).__name__, re.compile('a+').fullmatch('aa') is not None,"
        " functools.lru_cache.__module__)\n")
    assert out.splitlines() == ["[]", "['a.txt'] True file:///x%20y", "module True functools"]


def test_the_store_without_functools(tmp_path: Path) -> None:
    """The sqlite3 module takes functools.lru_cache at import for its statement cache: the stand-in's
    is functools' own C cache, and the statements run (the same one twice: from the cache)."""
    out = fresh(
        "import sys\n"
        "from ocibox._lazy import import_pathlib\n"
        "import_pathlib()\n"
        "from pathlib import Path\n"
        "from ocibox.store import Store\n"
        f"s = Store(Path({str(tmp_path)!r}))\n"
        "print([s.db.execute('SELECT ?+1', (i,)).fetchone()[0] for i in range(3)])\n"
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))\n")
    assert out.splitlines() == ["[1, 2, 3]", "[]"]


@pytest.mark.parametrize("lib", [contextlib, _contextlib], ids=["contextlib", "ocibox._contextlib"])
def test_contextlib_behaviour(lib: Any) -> None:
    log: list[str] = []

    @lib.contextmanager
    def cm(catch: bool = False) -> Iterator[int]:
        """doc"""
        log.append("enter")
        try:
            yield 1
        except KeyError:
            log.append("caught")
            if not catch:
                raise
        finally:
            log.append("exit")

    assert cm.__doc__ == "doc" and cm.__name__ == "cm"
    with cm() as v:
        assert v == 1
    with pytest.raises(KeyError), cm():
        raise KeyError("x")
    with cm(catch=True):
        raise KeyError("y")  # swallowed by the generator
    with pytest.raises(ValueError), cm(catch=True):
        raise ValueError("not caught")
    assert log == ["enter", "exit"] * 1 + ["enter", "caught", "exit"] * 2 + ["enter", "exit"]

    with lib.suppress(OSError, KeyError):
        raise FileNotFoundError
    with pytest.raises(ValueError), lib.suppress(OSError):
        raise ValueError

    @lib.contextmanager
    def twice() -> Iterator[None]:
        yield
        yield

    with pytest.raises(RuntimeError, match="didn't stop"), twice():
        pass

    @lib.contextmanager
    def never() -> Iterator[None]:
        if False:
            yield

    with pytest.raises(RuntimeError, match="didn't yield"), never():
        pass

    @lib.contextmanager
    def stop_inside() -> Iterator[None]:
        yield

    # a StopIteration of the block is not taken as the generator's end
    with pytest.raises(StopIteration), stop_inside():
        raise StopIteration

