"""The rooms of ocibox import only downwards (DESIGN.md's layout): every import statement of every module,
lazy ones inside functions included, read with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import ocibox

PACKAGE = Path(ocibox.__file__).parent

# Lower numbers are further down; a module may import its own room and rooms below it.
LEVELS = {
    "linux": 0,
    "_record": 1, "_lazy": 1, "_contextlib": 1, "_json": 1, "errors": 1, "units": 1, "options": 1,
    "digest": 2, "reference": 2, "image": 2, "settings": 2, "ocispec": 2, "monitor": 2, "rootless": 2,
    "store": 3, "cgroups": 3,
    "layers": 4,
    "puller": 5, "network": 5,
    "run": 6, "cache": 6,
    "containers": 7,
    "cli": 8, "runtime": 8, "__main__": 8, "__init__": 8,
}


def room(module: str) -> str:
    """``ocibox.store._images`` -> ``store``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> list[tuple[str, str, int]]:
    """(importing module, imported ocibox module, line) for every import in the package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        mod = ".".join(rel.parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out += [(mod, a.name, node.lineno) for a in node.names if a.name.startswith("ocibox")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ocibox"):
                if node.module == "ocibox":  # from ocibox import store, cache, ...
                    out += [(mod, f"ocibox.{a.name}", node.lineno) for a in node.names]
                else:
                    out.append((mod, node.module, node.lineno))
    return out


def test_every_room_is_known() -> None:
    rooms = {room(m) for m, _, _ in imports()} | {room(t) for _, t, _ in imports()}
    assert rooms <= set(LEVELS), rooms - set(LEVELS)


def test_nothing_imports_upwards() -> None:
    bad = [f"{m}:{line} imports {t}" for m, t, line in imports()
           if room(m) != room(t) and LEVELS[room(t)] > LEVELS[room(m)]]
    assert bad == []


def test_the_named_rules() -> None:
    graph = imports()
    # the seam imports no ocibox package but its own
    assert [(m, t) for m, t, _ in graph if room(m) == "linux" and room(t) != "linux"] == []
    # the store imports neither the puller nor the runner (nor the layer store or the verbs above it)
    assert [(m, t) for m, t, _ in graph if room(m) == "store" and room(t) in ("puller", "run", "layers", "cache")] == []
    # layers/ and the store never import run/
    assert [(m, t) for m, t, _ in graph if room(m) in ("layers", "store") and room(t) == "run"] == []


def test_no_private_module_of_another_room() -> None:
    """A room uses another through its package's public names, never ``other._module``."""
    bad = [f"{m}:{line} imports {t}" for m, t, line in imports()
           if room(m) != room(t) and any(p.startswith("_") for p in t.split(".")[2:])]
    assert bad == []
