"""The command line: parses arguments, calls one function per verb, renders output.

No logic lives here. Errors are mapped to exit codes in one place, ``main``.
``ocibox run`` takes a fast path that never imports typer (87 ms of imports),
the registry client or tqdm: a warm run must start in a few tens of ms; ``ocibox pull``
has its own option parser here for the same reason. The other verbs are the typer app of
``_app``; what they print is made in ``_render`` (tables, sizes, ages, the lines of rmi and
prune, prune's confirmation).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing is not imported on the run and pull paths (5 ms)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ocibox.cli._render import df_table, images_table, prune_lines, rmi_lines
    from ocibox.settings import Settings

GLOBAL_HELP = {
    "--root": "store root (default: $OCIBOX_ROOT, /var/lib/ocibox as root, $XDG_DATA_HOME/ocibox otherwise)",
    "--quiet": "print only what scripts need (no progress)",
    "--debug": "show tracebacks and the HTTP log",
    "--insecure-registry": "allow plain HTTP / unverified TLS to this registry (repeatable)",
}


CERT_DIR_HELP = ("directory of the registry's CA certificates (*.crt) and client certificates (*.cert with "
                 "*.key); default: /etc/containers/certs.d/HOST[:PORT] or /etc/docker/certs.d/HOST[:PORT]")


def parse_globals(argv: list[str]) -> tuple[Settings, list[str]]:
    """Take the global options that stand before the verb; return settings and the rest.

    One parser for both paths (typer and the run fast path), so they cannot disagree.
    """
    from ocibox.errors import UsageError
    from ocibox.settings import Config, Settings
    from ocibox.store import default_root

    root: Path | None = None
    quiet = debug = False
    insecure: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        name, eq, val = a.partition("=")
        if name in ("--root", "--insecure-registry"):
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                i += 1
                val = argv[i]
            if name == "--root":
                root = Path(val)
            else:
                insecure.append(val)
        elif a in ("--quiet", "-q"):
            quiet = True
        elif a == "--debug":
            debug = True
        else:
            break
        i += 1
    rest = argv[i:]
    return (
        Settings(
            root=(root or default_root()).absolute(),
            quiet=quiet,
            debug=debug,
            insecure_registries=tuple(insecure),
            config=Config.load(),
        ),
        rest,
    )


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: ``ocibox`` and ``python -m ocibox``."""
    from ocibox.errors import OciboxError

    argv_was_ours = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[:8]
    try:
        settings, rest = parse_globals(argv)
        if rest and rest[0] == "run" and "--help" not in rest[1:2]:
            from ocibox.run import run_main

            code = run_main(settings, rest[1:])
            if argv_was_ours:
                # The container has exited and everything is recorded: skip the interpreter's
                # teardown (module and object cleanup, ~10 ms of a warm run), as a C program would.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            sys.exit(code)
        if rest and rest[0] == "pull":
            pull_main(settings, rest[1:])  # no typer/click on the way (35 ms of imports)
        else:
            _typer_main(settings, rest)
    except OciboxError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug or an unforeseen failure: one line, docker's 125
        if debug:
            raise
        print(f"Error: ocibox failed: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        sys.exit(125)
    sys.exit(0)


PULL_OPTIONS = (
    ("--platform OS/ARCH[/VARIANT]", "the platform to pull from a multi-platform image (default: this host's)"),
    ("-q, --quiet", "print only the image digest"),
    ("--cert-dir DIR", CERT_DIR_HELP),
    ("--help", "show this help and exit"),
)


def pull_main(settings: Settings, argv: list[str]) -> None:
    """``ocibox pull [OPTIONS] IMAGE`` (docker's and podman's options), parsed here: the pull path
    never imports typer."""
    from ocibox.errors import UsageError

    image: str | None = None
    values = {"--platform": "", "--cert-dir": ""}
    quiet = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        name, eq, value = arg.partition("=")
        if name in values:
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"ocibox pull: {name} needs a value (see 'ocibox pull --help')")
                value, i = argv[i], i + 1
            values[name] = value
        elif arg in ("-q", "--quiet"):
            quiet = True
        elif arg in ("--help", "-h"):
            _out("usage: ocibox pull [OPTIONS] IMAGE\n\nPull an image (and all its layers, unpacked) from a "
                 "registry.\n\noptions:\n" + "\n".join(f"  {o:<32} {h}" for o, h in PULL_OPTIONS))
            return
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"ocibox pull: unrecognized option {arg!r} (see 'ocibox pull --help')")
        elif image is None:
            image = arg
        else:
            raise UsageError(f"ocibox pull: one IMAGE only, got {image!r} and {arg!r}")
    if image is None:
        raise UsageError("ocibox pull: an IMAGE is required (see 'ocibox pull --help')")
    from ocibox import puller
    from ocibox.image import Platform
    from ocibox.reference import Reference

    ref = Reference.parse(image)
    plat = Platform.parse(values["--platform"]) if values["--platform"] else None
    s = _with(settings, quiet=quiet or settings.quiet, cert_dir=values["--cert-dir"] or settings.cert_dir)
    result = puller.pull(s, ref, platform=plat)
    if s.quiet:
        _out(str(result.pinned))


def _typer_main(settings: Settings, rest: list[str]) -> None:
    import click

    from ocibox.cli._app import build_app

    app = build_app(settings)
    try:
        # standalone_mode=False: click returns typer.Exit's code instead of exiting, and raises
        # usage errors, so that every exit goes through main() and its docker exit codes.
        code = app(args=rest, prog_name="ocibox", standalone_mode=False)
    except click.exceptions.UsageError as e:
        e.show()
        sys.exit(125)
    except click.exceptions.Abort:
        sys.exit(130)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _with(settings: Settings, **kw: Any) -> Settings:
    from ocibox._record import replace

    return replace(settings, **kw)


# the renderers, loaded on first use (not on the run and pull paths)
__getattr__ = lazy_getattr(__name__, dict.fromkeys(("df_table", "images_table", "prune_lines", "rmi_lines"), "_render"))


__all__ = ["df_table", "images_table", "main", "parse_globals", "prune_lines", "pull_main", "rmi_lines"]
