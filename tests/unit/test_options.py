"""ocibox.options: docker's (pflag's) rules from a table, arguments by metavar, errors and help."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ocibox.options
from ocibox.errors import UsageError
from ocibox.options import Parser

OPTIONS = (
    (("-f", "--force"), "bool", "", "remove all tags"),
    (("-a", "--all"), "bool", "", "everything"),
    (("-e", "--env"), "list", "NAME[=VALUE]", "set a variable"),
    (("-c", "--cpu-shares"), "int", "N", "relative CPU weight"),
    (("--format",), "str", "FORMAT", "table or json"),
    (("--pull",), ("missing", "always", "never"), "WHEN", "when to pull"),
    (("--network", "--net"), "str", "MODE", "network mode"),
)


def parser(*args: tuple[str, str, str], **kw: object) -> Parser:
    return Parser("ocibox verb", OPTIONS, args, **kw)  # type: ignore[arg-type]


def test_pflag_rules() -> None:
    ns = parser(("rest", "[ARG...]", "")).parse(
        ["-fa", "-eA=1", "-e=B=2", "-e", "C=3", "--env", "D=4", "--env=E=5", "-c7", "--format=json", "--net", "none",
         "--pull", "never", "x", "-", "--", "-f", "--all"])
    assert ns["env"] == ["A=1", "B=2", "C=3", "D=4", "E=5"] and ns["force"] and ns["all"]
    assert (ns["cpu_shares"], ns["format"], ns["network"], ns["pull"]) == (7, "json", "none", "never")
    assert ns["rest"] == ["x", "-", "-f", "--all"]  # '-' is an argument; '--' ends the options


def test_bools_take_true_and_false() -> None:
    p = parser()
    assert p.parse(["--force=false"])["force"] is False and p.parse(["--force=true"])["force"] is True
    assert p.parse(["-f=false"])["force"] is False and p.parse(["-f=1"])["force"] is True
    assert p.parse(["-f", "--force=0"])["force"] is False


def test_defaults_and_fresh_lists() -> None:
    p = parser(defaults={"format": "table", "network": None})
    ns = p.parse([])
    assert (ns["force"], ns["env"], ns["cpu_shares"], ns["format"], ns["pull"], ns["network"]) == (
        False, [], 0, "table", "missing", None)
    p.parse(["-e", "A"])
    assert p.parse([])["env"] == []


def test_interspersed_or_not() -> None:
    ns = parser(("images", "IMAGE...", "")).parse(["a", "-f", "b"])
    assert ns["images"] == ["a", "b"] and ns["force"]
    p = parser(("image", "IMAGE", ""), ("command", "[COMMAND] [ARG...]", ""), interspersed=False)
    ns = p.parse(["-f", "img", "ls", "-f", "--", "--bogus"])
    assert (ns["image"], ns["command"], ns["force"]) == ("img", ["ls", "-f", "--", "--bogus"], True)
    assert p.parse(["--", "-img"])["image"] == "-img"
    assert p.parse(["img"])["command"] == []


def test_arguments_by_metavar() -> None:
    p = parser(("src", "SRC", ""), ("tag", "[TAG]", ""))
    ns = p.parse(["a"])
    assert (ns["src"], ns["tag"]) == ("a", None)
    ns = p.parse(["a", "b"])
    assert (ns["src"], ns["tag"]) == ("a", "b")


@pytest.mark.parametrize("args,argv,match", [
    ((), ["--netw", "x"], "unrecognized option '--netw'"),  # no abbreviations
    ((), ["-fax"], "unrecognized option '-x' in '-fax'"),
    ((), ["-e"], "-e needs a value"),
    ((), ["--format"], "--format needs a value"),
    ((), ["--force=maybe"], "invalid boolean 'maybe' for --force"),
    ((), ["-f=maybe"], "invalid boolean 'maybe' for -f"),
    ((), ["-c", "many"], "invalid number 'many' for -c"),
    ((), ["--pull", "sometimes"], r"invalid choice 'sometimes' for --pull \(choose from missing, always, never\)"),
    ((), ["extra"], "takes no arguments, got 'extra'"),
    ((("image", "IMAGE", ""),), [], "an IMAGE is required"),
    ((("server", "SERVER", ""),), ["-f"], "a SERVER is required"),
    ((("image", "IMAGE...", ""),), [], "at least one IMAGE is required"),
    ((("image", "IMAGE", ""),), ["a", "b"], "one IMAGE only, got 'a' and 'b'"),
    ((("src", "SRC", ""), ("dst", "DST", "")), ["a", "b", "c"], "unexpected argument 'c' after SRC DST"),
])
def test_errors_say_what_was_wrong(args: tuple[tuple[str, str, str], ...], argv: list[str], match: str) -> None:
    with pytest.raises(UsageError, match=match) as e:
        parser(*args).parse(argv)
    assert str(e.value).startswith("ocibox verb: ") and str(e.value).endswith(" (see 'ocibox verb --help')")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    p = parser(("server", "SERVER", "registry host[:port]"), description="Do a thing.",
               sections=(("commands", [("ls", "List")]),), epilog="Run 'ocibox verb COMMAND --help'.")
    with pytest.raises(SystemExit) as e:
        p.parse(["-f", "-h", "--bogus"])  # help as soon as it is seen
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out == p.format_help()
    assert out.splitlines()[:3] == ["usage: ocibox verb [OPTIONS] SERVER", "", "Do a thing."]
    assert "arguments:\n  SERVER" in out and "registry host[:port]" in out
    assert "  -e, --env NAME[=VALUE]           set a variable\n" in out
    assert "  -f, --force                      remove all tags\n" in out
    assert "  -h, --help                       show this help and exit\n" in out
    assert "commands:\n  ls   List\n" in out and out.endswith("Run 'ocibox verb COMMAND --help'.\n")
    with pytest.raises(UsageError, match="unrecognized option '--bogus'"):
        p.parse(["--bogus", "--help"])  # what comes before --help is parsed first


def test_h_is_help_unless_the_table_uses_it() -> None:
    p = Parser("ocibox run", ((("-h", "--hostname"), "str", "NAME", "host name"),), (("image", "IMAGE", ""),))
    assert p.parse(["-h", "box", "img"])["hostname"] == "box"
    assert "  --help " in p.format_help() and "-h, --help" not in p.format_help()
    assert Parser("ocibox x", ()).format_help().startswith("usage: ocibox x\n")  # no [OPTIONS] for --help alone


@pytest.mark.parametrize("options,args", [
    (((("-f", "--force"), "bool", "", ""), (("-f",), "bool", "", "")), ()),  # a name twice
    (((("--x",), "float", "X", ""),), ()),  # an unknown kind
    (((("-xy",), "bool", "", ""),), ()),  # a short name of two letters
    ((), (("a", "A...", ""), ("b", "B", ""))),  # several values before the last
    ((), (("a", "[A]", ""), ("b", "B", ""))),  # required after optional
])
def test_bad_tables_are_refused(options: tuple, args: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):
        Parser("ocibox x", options, args)


def test_imports_only_the_errors_and_the_standard_library() -> None:
    tree = ast.parse(Path(ocibox.options.__file__).read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m for m in mods if m.startswith("ocibox")} == {"ocibox.errors"}
    code = "import sys, ocibox.options; print(sorted({'typing', 'argparse', 'click', 'typer'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
