"""The dispatcher: one table of verbs (groups, aliases), docker's help and unknown-verb line, the cost
of a start (no typer, click, argparse; the verb's module only when it runs)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import cli
import pytest
from cli import ocibox

from ocibox.cli import VERBS, call, find, group_parser, resolve
from ocibox.errors import UsageError
from ocibox.settings import Settings

# A group, a verb in it, a docker-style top-level alias, an alias of the group: one row each.
TABLE = (
    *VERBS,
    ("gadget", "", "Manage gadgets"),
    ("gadget ls", f"{__name__}:_ls", "List gadgets"),
    ("gs", "=gadget ls", ""),
    ("g", "=gadget", ""),
)


def _ls(settings: Settings, argv: list[str], prog: str) -> int:
    return len(argv) + (prog == "ocibox gs")


def test_every_row_names_a_function_and_a_summary() -> None:
    for words, target, summary in VERBS:
        summary = summary or (find(words) or ("", "", ""))[2]  # an alias says what it stands for
        assert summary and not summary.endswith("."), words
        if target.startswith("="):  # an alias: of a row that exists
            assert find(target[1:]) is not None, words
        elif target:
            module, _, function = target.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), words
        else:  # a group has verbs
            assert any(w.startswith(words + " ") for w, _, _ in VERBS), words


def test_resolve_verbs_groups_and_aliases() -> None:
    assert resolve(["images", "-q"]) == (find("images"), "ocibox images", ["-q"])
    assert resolve(["image", "mount", "busybox"])[1:] == ("ocibox image mount", ["busybox"])
    assert resolve(["system", "df", "-v"])[0] == ("system df", "ocibox.cli._cache:system_df", "Show disk usage of the store")
    row, prog, args = resolve(["gs", "-a"], TABLE)
    assert row == ("gadget ls", f"{__name__}:_ls", "List gadgets") and prog == "ocibox gs"
    assert call(row, Settings(root=Path("/nonexistent")), args, prog) == 2
    assert resolve(["g", "ls"], TABLE)[1:] == ("ocibox gadget ls", [])  # an alias of a group
    assert resolve(["ps", "-a"])[0][1] == "ocibox.cli._containers:ls"  # docker's ps is container ls


def test_groups_list_their_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["image"], ["image", "--help"], ["image", "-h"]):
        with pytest.raises(SystemExit) as e:
            resolve(argv)
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: ocibox image COMMAND\n\nManage images.\n")
        assert re.search(r"^  mount +Mount an image's rootfs read-only and print its path$", out, re.M)
        assert out.endswith("Run 'ocibox image COMMAND --help' for more information on a command.\n")
    top = group_parser("", TABLE).format_help()
    assert top.startswith("usage: ocibox [OPTIONS] COMMAND\n") and "--insecure-registry HOST[:PORT]" in top
    commands, managed = top.split("\ncommands:\n")[1].split("\nmanagement commands:\n")
    assert "  gs " in commands and "List gadgets" in commands and "  image " not in commands
    assert "  gadget " in managed and "  image " in managed and "  g " in managed
    assert "  ls " in group_parser("gadget", TABLE).format_help()


def test_unknown_verbs_are_one_line_and_125(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, line in ((["xyz"], "ocibox: 'xyz' is not an ocibox command. See 'ocibox --help'\n"),
                       (["image", "xyz", "a"], "ocibox: 'image xyz' is not an ocibox command. See 'ocibox image --help'\n"),
                       (["mount"], "ocibox: 'mount' is not an ocibox command. See 'ocibox --help'\n")):
        with pytest.raises(SystemExit) as e:
            resolve(argv)
        assert e.value.code == 125 and capsys.readouterr().err == line
    with pytest.raises(UsageError, match=r"^ocibox image: unrecognized option '--bogus' \(see 'ocibox image --help'\)$"):
        resolve(["image", "--bogus"])


@pytest.mark.parametrize("words", [w for w, target, _ in VERBS if target])
def test_every_verb_has_help(words: str, capsys: pytest.CaptureFixture[str]) -> None:
    from ocibox.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--root", "/nonexistent", *words.split(), "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f"usage: ocibox {words}") and "--help" in out


def test_the_cli_end_to_end(tmp_path: Path) -> None:
    r = ocibox(tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: ocibox [OPTIONS] COMMAND") and "  system " in r.stdout
    r = ocibox(tmp_path, "xyz")
    assert (r.returncode, r.stdout, r.stderr) == (125, "", "ocibox: 'xyz' is not an ocibox command. See 'ocibox --help'\n")
    r = ocibox(tmp_path, "--bogus")
    assert r.returncode == 125 and r.stderr == "Error: ocibox: unrecognized option '--bogus' (see 'ocibox --help')\n"
    r = ocibox(tmp_path, "images", "extra")
    assert r.returncode == 125 and "ocibox images: takes no arguments, got 'extra'" in r.stderr
    r = ocibox(tmp_path, "images")
    assert (r.returncode, r.stdout.split()) == (0, ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"])
    r = ocibox(tmp_path, "images", "--format", "yaml")
    assert r.returncode == 125 and r.stderr == "Error: invalid --format 'yaml': use table or json\n"
    assert ocibox(tmp_path, "verify").returncode == 0
    r = ocibox(tmp_path, "export", "img")
    assert r.returncode == 125 and "ocibox export: -o, --output is required" in r.stderr
    r = ocibox(tmp_path, "rmi")
    assert r.returncode == 125 and "ocibox rmi: at least one IMAGE is required" in r.stderr


@pytest.mark.parametrize("argv,absent", [
    (["images"], ()),
    (["system", "df"], ()),
    (["prune", "--help"], ()),
    (["--help"], ("ocibox.store", "sqlite3", "pathlib")),  # help and groups need no settings
    (["image"], ("ocibox.store", "sqlite3", "pathlib")),
])
def test_no_typer_click_or_argparse(argv: list[str], absent: tuple[str, ...], tmp_path: Path) -> None:
    never = ("typer", "click", "argparse", "httpx", "ocibox.cli._registry", "ocibox.cli._layers", *absent)
    code = (f"import sys; from ocibox.cli import main; sys.argv = ['ocibox', '--root', {str(tmp_path)!r}, *{argv!r}]\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(set({never!r}) & set(sys.modules)))")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert cp.stdout.splitlines()[-1] == "[]"


def test_version(tmp_path: Path) -> None:
    import ocibox as package

    for flag in ("--version", "-v"):
        r = ocibox(tmp_path, flag)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"ocibox version {package.__version__}\n", "")


def test_a_reader_that_went_away_ends_it_quietly(tmp_path: Path) -> None:
    """``ocibox images | head -0``: the write fails with EPIPE; no traceback or error line, 128+SIGPIPE."""
    import os

    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    try:
        cp = subprocess.run(cli.argv(tmp_path, "images"), stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert (cp.returncode, cp.stderr) == (141, "")


def test_the_entry_points_warmup_knows_the_global_options_that_take_a_value() -> None:
    """cgroups.warm_for finds the verb before the CLI is imported: it skips the same global options."""
    from ocibox.cgroups import _warmup
    from ocibox.cli import GLOBAL_OPTIONS

    takes_value = {name for names, kind, _, _ in GLOBAL_OPTIONS if kind != "bool" for name in names}
    assert takes_value == set(_warmup.VALUE_OPTIONS)
