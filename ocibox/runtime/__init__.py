"""``ocibox-runtime``: ocibox's container executor behind runc's command line, so that containerd's runc
shim (and so Kubernetes, through a RuntimeClass) and conmon drive it as they drive runc.

Global options: ``--root DIR`` (state; default /run/ocibox-runtime), ``--log FILE``, ``--log-format
text|json`` (errors as runc's JSON lines: the last error line is what containerd reports), ``--debug``,
``--systemd-cgroup`` (refused: ocibox manages cgroupfs itself). Commands as runc 1.1 has them: create,
start, state, kill, delete, exec, pause, resume, ps, update, list, run, spec, features; ``--version``.
Exit status: 0, or 1 on an error (255 when exec's process cannot be started, as runc), or the
container's status for ``run`` and a waited ``exec``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

VERSION = "0.1.0"
COMMANDS = ("create", "start", "state", "kill", "delete", "exec", "pause", "resume", "ps", "update", "list",
            "run", "spec", "features")
GLOBALS = (
    (("--root",), "str", "DIR", "where the containers' state is kept (default /run/ocibox-runtime)"),
    (("--log",), "str", "FILE", "append errors (and with --debug, more) to this file"),
    (("--log-format",), ("text", "json"), "FORMAT", "text or json (runc's)"),
    (("--debug",), "bool", "", "log what each command does"),
    (("--systemd-cgroup",), "bool", "", "refused: ocibox manages cgroups through cgroupfs"),
    (("-v", "--version"), "bool", "", "print the version"),
    (("--rootless",), "str", "auto|true|false", "(accepted; rootless containers come from the config's user namespace)"),
    (("--criu",), "str", "PATH", "(accepted for runc's callers; checkpointing is not supported)"),
)


class Log:
    """Errors (and debug lines) as runc writes them: to stderr, and to --log as text or JSON lines."""

    def __init__(self, path: str, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        import json
        import time

        stamp = time.time()
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f"{stamp % 1:.9f}"[1:] + "Z"
        line = (json.dumps({"level": level, "msg": msg, "time": when}) if self.fmt == "json"
                else f'time="{when}" level={level} msg="{msg}"')
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, msg: str) -> None:
        sys.stderr.write(f"ocibox-runtime: {msg}\n")
        self.write("error", msg)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.write("debug", msg)


def _normalize(argv: list[str]) -> list[str]:
    """Go's flag package takes -name as --name: runc's callers use both."""
    out = []
    for a in argv:
        if a.startswith("-") and not a.startswith("--") and len(a.split("=", 1)[0]) > 2:
            a = "-" + a
        out.append(a)
    return out


def main(argv: list[str] | None = None) -> NoReturn:
    from ocibox.errors import OciboxError
    from ocibox.options import Parser

    argv_was_ours = argv is None
    argv = _normalize(list(sys.argv[1:] if argv is None else argv))
    parser = Parser("ocibox-runtime", GLOBALS, (("command", "COMMAND [ARG...]", ""),), interspersed=False,
                    description="Run OCI containers (runc's command line over ocibox's executor). Commands: "
                                + ", ".join(COMMANDS) + ".", defaults={"log_format": "text"})
    log = Log("", "text", False)
    code = 1
    try:
        if "-v" in argv[:1] or "--version" in argv[:1]:
            sys.stdout.write(f"ocibox-runtime version {VERSION}\nspec: 1.1.0\n")
            sys.exit(0)
        ns = parser.parse(argv)
        log = Log(ns["log"], ns["log_format"], ns["debug"])
        if ns["systemd_cgroup"]:
            raise OciboxError("--systemd-cgroup is not supported: ocibox manages cgroups through cgroupfs; "
                              "configure the runtime without SystemdCgroup")
        command, args = ns["command"][0], ns["command"][1:]
        if command not in COMMANDS:
            raise OciboxError(f"unknown command {command!r}: one of {', '.join(COMMANDS)}")
        if command not in ("run", "exec"):
            # A call that returns within ms makes no garbage cycles worth collecting; the collector
            # would run dozens of times over the executor's imports (1 ms of create). run and exec
            # may supervise for hours: they keep it; create turns it on again before PID 1's fork.
            import gc

            gc.disable()
        from ocibox.runtime._state import default_root

        if command in ("start", "delete"):  # a module of their own: see there
            from ocibox.runtime import _lifecycle as commands
        else:
            from ocibox._lazy import import_pathlib

            import_pathlib()  # before the executor imports it: without urllib.parse (and ipaddress), ~2 ms
            from ocibox.runtime import _commands as commands  # type: ignore[no-redef]
        root = os.path.abspath(ns["root"] or default_root())
        log.debug(f"{command} {' '.join(args)}")
        code = getattr(commands, command + "_" if command in ("list", "exec") else command)(root, args, log)
    except OciboxError as e:
        log.error(str(e))
        code = getattr(e, "runtime_code", 1)
    except KeyboardInterrupt:
        code = 130
    except OSError as e:  # a step that failed outside the executor's own error handling: still one line
        log.error(f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}")
        code = 1
    except Exception as e:  # a bug: the caller (containerd) still gets one error line, --debug the trace
        import traceback

        log.debug(traceback.format_exc())
        log.error(f"internal error: {type(e).__name__}: {e}")
        code = 1
    sys.stdout.flush()
    if argv_was_ours:  # done and written: no interpreter teardown (a few ms of each of the shim's calls)
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
