"""Command-line options with docker's (pflag's) rules, parsed from a table; help made from the same table.

Not argparse (argparse, gettext and locale, a dozen regular expressions: 10 ms of every start) and not
click: every verb starts with this parser, and some run in loops. One table describes a command::

    OPTIONS = (
        (("-f", "--force"), "bool", "", "remove all tags of the image"),
        (("--format",), "str", "FORMAT", "table or json"),
        (("-e", "--env"), "list", "NAME[=VALUE]", "set an environment variable"),   # repeatable
        (("-c", "--cpu-shares"), "int", "N", "relative CPU weight"),
        (("--pull",), ("missing", "always", "never"), "WHEN", "when to pull"),      # choices
    )
    ARGS = (("image", "IMAGE", ""), ("command", "[COMMAND] [ARG...]", ""))       # (dest, metavar, help)
    ns = Parser("ocibox run", OPTIONS, ARGS, interspersed=False).parse(argv)
    ns["env"], ns["cpu_shares"], ns["image"], ns["command"]

An option's destination is its first long name without the dashes, ``-`` as ``_`` (``--cpu-shares``
-> ``cpu_shares``). Defaults: ``False``, ``""``, ``0``, a fresh ``[]``, the first choice; ``defaults=``
overrides them (``{"entrypoint": None}``: absent is not empty). An argument's metavar says what it
takes: ``IMAGE`` one, required; ``[TAG]`` one, optional (``None`` when absent); ``IMAGE...`` one or
more and ``[ARG...]`` any number (lists; only the last argument may take several).

Rules (docker's, pflag's): ``--name VALUE`` or ``--name=VALUE``; a bool takes no value but accepts
``--rm=false`` (and ``-t=false``); short options cluster (``-it``, ``-eFOO=1``, ``-e=FOO``, ``-c7``); no
abbreviations (``--netw`` is not ``--network``); ``-`` alone is an argument; ``--`` ends the options.
Options and arguments mix (``rmi IMAGE -f``) unless ``interspersed=False`` (docker's run and exec):
then the first argument ends the options, and everything after it is taken verbatim. ``--help``
(and ``-h`` when the table does not use it) prints the help and raises ``SystemExit(0)``.
Errors: ``UsageError("ocibox VERB: <what was wrong> (see 'ocibox VERB --help')")``.
"""

from __future__ import annotations

import sys

from ocibox.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    Kind = str | tuple[str, ...]  # "bool", "str", "int", "list" or the choices
    Option = tuple[tuple[str, ...], Kind, str, str]  # (names, kind, metavar, help)
    Arg = tuple[str, str, str]  # (dest, metavar, help)
    Section = tuple[str, Sequence[tuple[str, str]]]  # (title, rows of (name, text))

HELP_TEXT = "show this help and exit"
_EMPTY: dict[str, Any] = {"bool": False, "str": "", "int": 0}
_COLUMN = 32  # where the help of an option starts


def dest(names: Sequence[str]) -> str:
    """The destination of an option: its first long name (else its first name) without dashes."""
    name = next((n for n in names if n.startswith("--")), names[0])
    return name.lstrip("-").replace("-", "_")


def _arg_shape(metavar: str) -> tuple[bool, bool, str]:
    """(optional, variadic, name) of an argument's metavar: ``[ARG...]`` -> (True, True, "ARG")."""
    optional = metavar.startswith("[")
    variadic = metavar.rstrip("]").endswith("...")
    return optional, variadic, metavar.strip("[]").split("]")[0].split(" ")[0].removesuffix("...")


class Parser:
    """One command's options and arguments; :meth:`parse` and :meth:`format_help` both come from the table.

    ``prog`` is the command as typed (``ocibox image mount``), ``usage`` replaces the made usage line,
    ``sections`` adds titled two-column lists after the options (a group's commands; or a function
    that makes them, called only for the help) and ``epilog`` a last paragraph.
    """

    def __init__(self, prog: str, options: Sequence[Option], args: Sequence[Arg] = (), *,
                 description: str = "", defaults: Mapping[str, Any] | None = None, interspersed: bool = True,
                 usage: str = "", sections: Sequence[Section] | Callable[[], Sequence[Section]] = (),
                 epilog: str = "") -> None:
        names = [n for o in options for n in o[0]]
        if "--help" not in names:  # docker's: -h too, unless the command uses it (run's --hostname)
            options = (*options, (("--help",) if "-h" in names else ("-h", "--help"), "bool", "", HELP_TEXT))
        self.prog, self.options, self.args = prog, tuple(options), tuple(args)
        self.description, self.interspersed = description, interspersed
        self.usage, self.sections, self.epilog = usage, sections, epilog
        self._by_name: dict[str, tuple[str, Kind]] = {}
        self._defaults: dict[str, Any] = {}
        self._lists: list[str] = []
        for names_, kind, _, _ in self.options:
            d = dest(names_)
            for n in names_:
                if n in self._by_name or not n.startswith("-") or n in ("-", "--") or (
                        not n.startswith("--") and len(n) != 2):
                    raise ValueError(f"{prog}: bad or repeated option name {n!r}")
                self._by_name[n] = (d, kind)
            if kind == "list":
                self._lists.append(d)
            elif isinstance(kind, tuple) and kind:
                self._defaults[d] = kind[0]
            elif kind in _EMPTY:
                self._defaults[d] = _EMPTY[kind]
            else:
                raise ValueError(f"{prog}: unknown kind {kind!r} of {names_[0]}")
        if defaults:
            self._defaults.update(defaults)
        self._help = self._by_name["--help"][0]
        for i, (_, metavar, _) in enumerate(self.args):
            optional, variadic, _ = _arg_shape(metavar)
            if variadic and i != len(self.args) - 1:
                raise ValueError(f"{prog}: only the last argument may take several values ({metavar})")
            if not optional and i and _arg_shape(self.args[i - 1][1])[0]:
                raise ValueError(f"{prog}: a required argument after an optional one ({metavar})")

    # ------------------------------------------------------------------ parsing

    def error(self, message: str) -> UsageError:
        """The usage error of this command: ``ocibox VERB: MESSAGE (see 'ocibox VERB --help')``."""
        return UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    def parse(self, argv: Sequence[str]) -> dict[str, Any]:
        """Options by destination and arguments by their dest; ``--help`` prints the help and exits 0."""
        ns: dict[str, Any] = dict(self._defaults)
        for d in self._lists:
            ns[d] = []  # fresh lists per parse
        by_name = self._by_name
        positionals: list[str] = []
        i, n = 0, len(argv)
        while i < n:
            arg = argv[i]
            i += 1
            if arg == "--":
                positionals += argv[i:]
                break
            if arg.startswith("--"):
                name, eq, value = arg.partition("=")
                if name not in by_name:
                    raise self.error(f"unrecognized option {name!r}")
                d, kind = by_name[name]
                if not eq and kind != "bool":
                    if i >= n:
                        raise self.error(f"{name} needs a value")
                    value, i = argv[i], i + 1
                self._set(ns, d, kind, value if eq or kind != "bool" else None, name)
            elif arg.startswith("-") and arg != "-":
                j = 1
                while j < len(arg):
                    short = "-" + arg[j]
                    if short not in by_name:
                        raise self.error(f"unrecognized option {short!r} in {arg!r}")
                    d, kind = by_name[short]
                    j += 1
                    rest = arg[j:]
                    if kind == "bool":
                        if len(rest) > 1 and rest[0] == "=":  # -t=false
                            self._set(ns, d, kind, rest[1:], short)
                            break
                        self._set(ns, d, kind, None, short)
                        continue
                    if rest:
                        value = rest[1:] if rest.startswith("=") else rest
                    elif i < n:
                        value, i = argv[i], i + 1
                    else:
                        raise self.error(f"{short} needs a value")
                    self._set(ns, d, kind, value, short)
                    break
            else:
                positionals.append(arg)
                if not self.interspersed:
                    positionals += argv[i:]
                    break
            if ns[self._help]:
                sys.stdout.write(self.format_help())
                sys.stdout.flush()
                raise SystemExit(0)
        self._assign(ns, positionals)
        return ns

    def _set(self, ns: dict[str, Any], d: str, kind: Kind, value: str | None, shown: str) -> None:
        if kind == "bool":
            if value is None or value.lower() in ("true", "1"):
                ns[d] = True
            elif value.lower() in ("false", "0"):
                ns[d] = False
            else:
                raise self.error(f"invalid boolean {value!r} for {shown}: use true or false")
        elif value is None:
            raise self.error(f"{shown} needs a value")
        elif kind == "list":
            ns[d].append(value)
        elif kind == "int":
            try:
                ns[d] = int(value)
            except ValueError:
                raise self.error(f"invalid number {value!r} for {shown}") from None
        elif isinstance(kind, tuple) and value not in kind:
            raise self.error(f"invalid choice {value!r} for {shown} (choose from {', '.join(kind)})")
        else:
            ns[d] = value

    def _assign(self, ns: dict[str, Any], positionals: list[str]) -> None:
        k = 0
        for d, metavar, _ in self.args:
            optional, variadic, name = _arg_shape(metavar)
            if variadic:
                ns[d], k = positionals[k:], len(positionals)
                if not ns[d] and not optional:
                    raise self.error(f"at least one {name} is required")
            elif k < len(positionals):
                ns[d], k = positionals[k], k + 1
            elif optional:
                ns[d] = None
            else:
                raise self.error(f"{'an' if name[:1] in 'AEIOU' else 'a'} {name} is required")
        if k < len(positionals):
            extra = positionals[k]
            if not self.args:
                raise self.error(f"takes no arguments, got {extra!r}")
            if len(self.args) == 1:
                raise self.error(f"one {_arg_shape(self.args[0][1])[2]} only, got {positionals[k - 1]!r} and {extra!r}")
            raise self.error(f"unexpected argument {extra!r} after {' '.join(a[1] for a in self.args)}")

    # ------------------------------------------------------------------ help

    def usage_line(self) -> str:
        if self.usage:
            return self.usage
        has_options = any(dest(o[0]) != self._help for o in self.options)
        return " ".join([self.prog, *(["[OPTIONS]"] if has_options else []), *(a[1] for a in self.args)])

    def format_help(self) -> str:
        """docker's layout: usage, description, arguments (those with a help), options, sections, epilog."""
        lines = [f"usage: {self.usage_line()}", ""]
        if self.description:
            lines += [self.description, ""]
        args = [(a[1], a[2]) for a in self.args if a[2]]
        if args:
            lines += ["arguments:", *_rows(args, _COLUMN), ""]
        shown = [(", ".join(names) + (f" {metavar}" if kind != "bool" else ""), text)
                 for names, kind, metavar, text in self.options]
        lines += ["options:", *_rows(shown, _COLUMN), ""]
        sections = self.sections() if callable(self.sections) else self.sections
        width = max((len(r[0]) for _, rows in sections for r in rows), default=0) + 2
        for title, rows in sections:
            if rows:
                lines += [f"{title}:", *_rows(rows, width), ""]
        if self.epilog:
            lines += [self.epilog, ""]
        return "\n".join(lines[:-1]) + "\n"


def _rows(rows: Sequence[tuple[str, str]], width: int) -> list[str]:
    """Two columns; a first column too wide for ``width`` puts its text on the next line."""
    out = []
    for left, text in rows:
        if not text:
            out.append(f"  {left}")
        elif len(left) < width:
            out.append(f"  {left:<{width}} {text}")
        else:
            out.append(f"  {left}\n  {'':<{width}} {text}")
    return out


__all__ = ["HELP_TEXT", "Parser", "dest"]
