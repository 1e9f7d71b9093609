"""The command line: one table of verbs, a dispatcher, one place that maps errors to exit codes.

No logic lives here. Every verb starts cheaply: the global options and each verb's options are
parsed by :mod:`ocibox.options` (docker's rules, no argparse, typer or click), and the module that
implements a verb is imported only when that verb runs (``run`` must start in a few tens of ms;
the cache verbs are run in loops by scripts). What the cache verbs print is made in ``_render``.

A verb is a row of :data:`VERBS`: ``(words, target, summary)``. ``target`` is

- ``"module:function"``: the function is called as ``function(settings, argv, prog)`` with the
  arguments after the verb's words and the command as typed (``"ocibox image mount"``, for help
  and errors); it returns the exit status (``None`` for 0);
- ``""``: a group (``image``, ``system``): its verbs are the rows whose words start with it;
- ``"=other words"``: an alias of another row (docker's ``ps`` for ``container ls``); an empty
  summary is the other row's.

Adding a verb, a group or an alias is one row each::

    ("container", "", "Manage containers"),
    ("container ls", "ocibox.cli._containers:ls", "List containers"),
    ("ps", "=container ls", ""),
"""

from __future__ import annotations

import os
import sys

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing is not imported on the run and pull paths (5 ms)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NoReturn

    from ocibox.cli._render import df_table, images_table, prune_lines, rmi_lines
    from ocibox.options import Parser
    from ocibox.settings import Settings

    Verb = tuple[str, str, str]

DESCRIPTION = "ocibox: pull OCI/Docker images into a layer store and run them in fresh namespaces."

VERBS: tuple[Verb, ...] = (
    ("run", "ocibox.cli:_run", "Run a command in a new container"),
    ("pull", "ocibox.cli._registry:pull", "Pull an image (and all its layers, unpacked) from a registry"),
    ("images", "ocibox.cli._cache:images", "List images in the store"),
    ("rmi", "ocibox.cli._cache:rmi", "Remove images (untag; delete what nothing else uses)"),
    ("inspect", "ocibox.cli._containers:inspect_any", "Display detailed information on containers or images"),
    ("prune", "ocibox.cli._cache:prune", "Remove dangling images, unused layers and blobs, leftovers of crashed work"),
    ("verify", "ocibox.cli._cache:verify", "Re-hash blobs and check layer directories against the database"),
    ("export", "ocibox.cli._layers:export", "Write an image's flattened rootfs as a tar"),
    ("login", "ocibox.cli._registry:login", "Log in to a registry"),
    ("logout", "ocibox.cli._registry:logout", "Remove the credentials stored for a registry"),
    ("unshare", "ocibox.cli._rootless:unshare", "Run a command in the user namespace of rootless ocibox"),
    ("image", "", "Manage images"),
    ("image inspect", "ocibox.cli._cache:inspect", "Show an image's manifest, config and layers as JSON"),
    ("image mount", "ocibox.cli._layers:mount", "Mount an image's rootfs read-only and print its path"),
    ("image umount", "ocibox.cli._layers:umount", "Unmount what 'image mount' mounted"),
    ("system", "", "Manage the store"),
    ("system df", "ocibox.cli._cache:system_df", "Show disk usage of the store"),
    ("system prune", "ocibox.cli._cache:system_prune", "Remove stopped containers, unused networks, dangling images"),
    ("container", "", "Manage containers"),
    ("container run", "=run", ""),
    ("container ls", "ocibox.cli._containers:ls", "List containers"),
    ("container ps", "=container ls", ""),
    ("container list", "=container ls", ""),
    ("container start", "ocibox.cli._containers:start", "Start one or more stopped containers"),
    ("container stop", "ocibox.cli._containers:stop", "Stop one or more running containers"),
    ("container restart", "ocibox.cli._containers:restart", "Restart one or more containers"),
    ("container kill", "ocibox.cli._containers:kill", "Kill one or more running containers"),
    ("container rm", "ocibox.cli._containers:rm", "Remove one or more containers"),
    ("container exec", "ocibox.cli._containers:exec_", "Execute a command in a running container"),
    ("container logs", "ocibox.cli._containers:logs", "Fetch the logs of a container"),
    ("container wait", "ocibox.cli._containers:wait", "Block until containers stop, then print their exit codes"),
    ("container attach", "ocibox.cli._containers:attach", "Attach this terminal to a running container"),
    ("container top", "ocibox.cli._containers:top", "Display the running processes of a container"),
    ("container inspect", "ocibox.cli._containers:inspect", "Display detailed information on containers"),
    ("container rename", "ocibox.cli._containers:rename", "Rename a container"),
    ("container stats", "ocibox.cli._containers:stats", "Display a sample of containers' resource usage"),
    ("container pause", "ocibox.cli._containers:pause", "Pause all processes within containers"),
    ("container unpause", "ocibox.cli._containers:unpause", "Unpause all processes within containers"),
    ("container prune", "ocibox.cli._containers:prune", "Remove all stopped containers"),
    ("container cleanup", "ocibox.cli._containers:cleanup", "(internal) What a monitor runs when PID 1 exits"),
    ("container port", "ocibox.cli._network:port", "List port mappings or a specific mapping for the container"),
    ("network", "", "Manage networks"),
    ("network create", "ocibox.cli._network:create", "Create a network"),
    ("network ls", "ocibox.cli._network:ls", "List networks"),
    ("network list", "=network ls", ""),
    ("network inspect", "ocibox.cli._network:inspect", "Display detailed information on one or more networks"),
    ("network rm", "ocibox.cli._network:rm", "Remove one or more networks"),
    ("network remove", "=network rm", ""),
    ("network prune", "ocibox.cli._network:prune", "Remove all unused networks"),
    ("ps", "=container ls", ""),
    ("port", "=container port", ""),
    ("start", "=container start", ""),
    ("stop", "=container stop", ""),
    ("restart", "=container restart", ""),
    ("kill", "=container kill", ""),
    ("rm", "=container rm", ""),
    ("exec", "=container exec", ""),
    ("logs", "=container logs", ""),
    ("wait", "=container wait", ""),
    ("attach", "=container attach", ""),
    ("top", "=container top", ""),
    ("rename", "=container rename", ""),
    ("stats", "=container stats", ""),
    ("pause", "=container pause", ""),
    ("unpause", "=container unpause", ""),
)

GLOBAL_OPTIONS = (
    (("--root",), "str", "PATH",
     "store root (default: $OCIBOX_ROOT, /var/lib/ocibox as root, $XDG_DATA_HOME/ocibox otherwise)"),
    (("-q", "--quiet"), "bool", "", "print only what scripts need (no progress)"),
    (("--debug",), "bool", "", "show tracebacks and the HTTP log"),
    (("--insecure-registry",), "list", "HOST[:PORT]", "allow plain HTTP / unverified TLS to this registry (repeatable)"),
    (("--ignore-chown-errors",), "bool", "",
     "without root: unpack files of owners outside your subordinate ids as root (podman's storage option)"),
    (("-v", "--version"), "bool", "", "print the version and exit"),
)

#: verbs that read or write the store's layer files as their owners: without root they run as root of
#: a user namespace with the user's ids (``ocibox.rootless.enter``), as podman's whole process does
USERNS_VERBS = ("pull", "system df", "export", "verify")


def parse_globals(argv: list[str]) -> tuple[Settings, list[str]]:
    """Take the global options that stand before the verb; return settings and the rest (the verb
    and its arguments). ``--help`` prints the help of ocibox and exits."""
    ns = group_parser("").parse(argv)
    return settings_of(ns), ns["command"]


def settings_of(ns: dict[str, Any]) -> Settings:
    """The settings the global options make (and the config file)."""
    from ocibox._lazy import import_pathlib

    import_pathlib()  # first: without urllib.parse
    from pathlib import Path

    from ocibox.settings import Config, Settings
    from ocibox.store import default_root

    config = Config.load()
    return Settings(
        root=(Path(ns["root"]) if ns["root"] is not None else default_root()).absolute(),
        quiet=ns["quiet"],
        debug=ns["debug"],
        insecure_registries=tuple(ns["insecure_registry"]),
        config=config,
        ignore_chown_errors=ns["ignore_chown_errors"] or config.ignore_chown_errors,
    )


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: ``ocibox`` and ``python -m ocibox``."""
    import gc

    # The collector's young generation every 10,000 allocations, not 700: a command's imports make
    # classes and functions by the thousand and no garbage cycles worth a pass (~1 ms of a ps); cycles
    # that long commands make (a pull) are still collected.
    gc.set_threshold(10_000)
    from ocibox.errors import OciboxError

    argv_was_ours = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[:8]
    try:
        ns = group_parser("").parse(argv)
        if ns["version"]:  # podman's and docker's --version
            import ocibox

            print(f"ocibox version {ocibox.__version__}")
            sys.exit(0)
        verb, prog, args = resolve(ns["command"])  # help and unknown verbs need no settings
        code = call(verb, settings_of(ns), args, prog)
        if argv_was_ours:
            # Done, and everything is written: skip the interpreter's teardown, as a C program would
            # (module and object cleanup: ~3 ms of a ps, ~10 ms of a warm run; and the store's close,
            # which checkpoints and deletes the database's WAL file, that the next command writing to
            # the store then makes again with two fsyncs).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    except OciboxError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (``ocibox ps | head``): quietly, as SIGPIPE ends a C program
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush of stdout must not fail again
        sys.exit(128 + 13)
    except Exception as e:  # a bug or an unforeseen failure: one line, docker's 125
        if debug:
            raise
        print(f"Error: ocibox failed: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        sys.exit(125)
    sys.exit(code)


# ----------------------------------------------------------------------------- the dispatcher


def find(words: str, verbs: Sequence[Verb] = VERBS) -> Verb | None:
    """The row of ``words`` (``"image mount"``); for an alias, the row it stands for (with the
    alias's summary if it has one)."""
    for row in verbs:
        if row[0] == words:
            if row[1].startswith("="):
                target = find(row[1][1:], verbs)
                if target is None:
                    raise LookupError(f"alias {words!r} of an unknown verb {row[1][1:]!r}")
                return target[0], target[1], row[2] or target[2]
            return row
    return None


def resolve(argv: list[str], verbs: Sequence[Verb] = VERBS) -> tuple[Verb, str, list[str]]:
    """The verb that ``argv`` (what follows the global options) names, the command as typed
    (``"ocibox image mount"``) and the verb's arguments. A group alone or with ``--help`` prints
    its help and exits 0; an unknown verb is one line and docker's 125."""
    group = ""
    while True:
        if group:  # a group's only option is --help
            argv = group_parser(group, verbs).parse(argv)["command"]
        if not argv:
            sys.stdout.write(group_parser(group, verbs).format_help())
            raise SystemExit(0)
        words = f"{group} {argv[0]}".lstrip()
        row = find(words, verbs)
        if row is None:
            sys.stderr.write(f"ocibox: {words!r} is not an ocibox command. See '{_prog(group)} --help'\n")
            raise SystemExit(125)
        if row[1]:
            return row, f"ocibox {words}", argv[1:]
        group, argv = row[0], argv[1:]


def call(verb: Verb, settings: Settings, argv: list[str], prog: str) -> int:
    """Import the verb's module and run it: its exit status."""
    module, _, function = verb[1].partition(":")
    if verb[0] in USERNS_VERBS and os.geteuid() != 0:
        from ocibox import rootless

        rootless.warn_single(rootless.current(), settings.root)
        rootless.enter()
    __import__(module)  # not importlib: ~0.6 ms of every command
    code: int | None = getattr(sys.modules[module], function)(settings, argv, prog)
    return code or 0


def group_parser(group: str, verbs: Sequence[Verb] = VERBS) -> Parser:
    """The parser of ``ocibox`` (``group`` ""; the global options) or of a group (``--help`` only):
    what follows is the verb and its arguments, verbatim; the help lists the verbs of the group."""
    from ocibox.options import Parser

    prog = _prog(group)
    summary = DESCRIPTION
    if group:
        row = find(group, verbs)
        assert row is not None
        summary = row[2]
    return Parser(
        prog, () if group else GLOBAL_OPTIONS, (("command", "[COMMAND] [ARG...]", ""),),
        description=summary if summary.endswith(".") else summary + ".",
        usage=f"{prog} COMMAND" if group else f"{prog} [OPTIONS] COMMAND",
        defaults=None if group else {"root": None}, interspersed=False,
        sections=lambda: _listing(group, verbs),
        epilog=f"Run '{prog} COMMAND --help' for more information on a command.",
    )


def _listing(group: str, verbs: Sequence[Verb]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The verbs right below ``group``, as docker lists them: commands, then management commands."""
    depth = group.count(" ") + 1 if group else 0
    commands: list[tuple[str, str]] = []
    managed: list[tuple[str, str]] = []
    for words, _, _ in verbs:
        if words.startswith(f"{group} ".lstrip()) and words.count(" ") == depth:
            row = find(words, verbs)
            assert row is not None
            (managed if not row[1] else commands).append((words.split(" ")[-1], row[2]))
    return [("commands", commands), ("management commands", managed)]


def _prog(group: str) -> str:
    return f"ocibox {group}".rstrip()


# ----------------------------------------------------------------------------- verbs and helpers


def _run(settings: Settings, argv: list[str], prog: str) -> int:
    """``ocibox run``: parsed by the runner itself (``ocibox.run._flags``), on its fast path."""
    from ocibox.run import run_main

    return run_main(settings, argv, prog)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _with(settings: Settings, **kw: Any) -> Settings:
    from ocibox._record import replace

    return replace(settings, **kw)


# the renderers, loaded on first use (not on the run and pull paths)
__getattr__ = lazy_getattr(__name__, dict.fromkeys(("df_table", "images_table", "prune_lines", "rmi_lines"), "_render"))


__all__ = ["USERNS_VERBS", "VERBS", "call", "df_table", "find", "group_parser", "images_table", "main", "parse_globals",
           "prune_lines", "resolve", "rmi_lines", "settings_of"]
