"""The command line: parses arguments, calls one function per verb, renders output.

No logic lives here. Errors are mapped to exit codes in one place, ``main``.
``ocibox run`` takes a fast path that never imports typer (87 ms of imports),
the registry client or tqdm: a warm run must start in a few tens of ms.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported on the run and pull paths (5 ms)
if TYPE_CHECKING:
    from typing import Annotated, Any, NoReturn

    import typer

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


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _progress(settings: Settings) -> bool:
    return not settings.quiet and sys.stderr.isatty()


def build_app(settings: Settings) -> typer.Typer:
    import typing

    import typer

    # typer evaluates the string annotations below against this module's globals
    globals().setdefault("typer", typer)
    globals().setdefault("Annotated", typing.Annotated)

    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        help="ocibox: pull OCI/Docker images into a layer store and run them in fresh namespaces.",
    )

    @app.callback()
    def _globals(
        root: Annotated[Path | None, typer.Option("--root", help=GLOBAL_HELP["--root"])] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=GLOBAL_HELP["--quiet"])] = False,
        debug: Annotated[bool, typer.Option("--debug", help=GLOBAL_HELP["--debug"])] = False,
        insecure_registry: Annotated[
            list[str] | None, typer.Option("--insecure-registry", help=GLOBAL_HELP["--insecure-registry"])
        ] = None,
    ) -> None:
        """Global options must come before the verb (they are parsed by ``parse_globals``)."""

    # ------------------------------------------------------------------ pull / login
    @app.command(
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
        add_help_option=False,
    )
    def pull(ctx: typer.Context) -> None:
        """Pull an image (and all its layers, unpacked) from a registry: ocibox pull [OPTIONS] IMAGE"""
        pull_main(settings, list(ctx.args))

    @app.command()
    def login(
        server: Annotated[str, typer.Argument(help="registry host[:port]")],
        username: Annotated[str | None, typer.Option("--username", "-u")] = None,
        password: Annotated[str | None, typer.Option("--password", "-p")] = None,
        password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
        cert_dir: Annotated[str, typer.Option("--cert-dir", help=CERT_DIR_HELP)] = "",
    ) -> None:
        """Log in to a registry; credentials go to ~/.docker/config.json (mode 0600)."""
        from ocibox import puller

        s = _with(settings, cert_dir=cert_dir) if cert_dir else settings
        puller.login(s, server, username=username, password=password, password_stdin=password_stdin)
        _out("Login Succeeded")

    @app.command()
    def logout(server: Annotated[str, typer.Argument(help="registry host[:port]")]) -> None:
        """Remove the credentials stored for a registry."""
        from ocibox import puller

        puller.logout(settings, server)
        _out(f"Removed login credentials for {server}")

    # ------------------------------------------------------------------ cache
    @app.command()
    def images(
        format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
        digests: Annotated[bool, typer.Option("--digests", help="show digests")] = False,
        all_: Annotated[bool, typer.Option("--all", "-a", help="show all images (also untagged)")] = False,
        quiet_ids: Annotated[bool, typer.Option("--quiet", "-q", help="only image ids")] = False,
        no_trunc: Annotated[bool, typer.Option("--no-trunc", help="full ids")] = False,
    ) -> None:
        """List images in the store."""
        from ocibox import cache

        _render(cache.list_images(settings, all_=all_), format, digests=digests, quiet=quiet_ids,
                no_trunc=no_trunc, kind="images")

    @app.command()
    def rmi(
        images_: Annotated[list[str], typer.Argument(metavar="IMAGE...")],
        force: Annotated[bool, typer.Option("--force", "-f", help="remove all tags of the image")] = False,
    ) -> None:
        """Remove images (untag; delete what nothing else uses)."""
        from ocibox import cache

        for line in cache.remove_images(settings, images_, force=force):
            _out(line)

    @app.command()
    def prune(
        all_: Annotated[bool, typer.Option("--all", "-a", help="also remove images no running container uses")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be removed")] = False,
        keep_storage: Annotated[str | None, typer.Option(help="evict least recently used images to fit SIZE")] = None,
        filter_: Annotated[list[str] | None, typer.Option("--filter", help="until=DURATION")] = None,
        force: Annotated[bool, typer.Option("--force", "-f", help="do not ask")] = False,
    ) -> None:
        """Remove dangling images, unused layers and blobs, leftovers of crashed work."""
        from ocibox import cache

        for line in cache.prune(settings, all_=all_, dry_run=dry_run, keep_storage=keep_storage,
                                filters=filter_ or [], force=force):
            _out(line)

    system = typer.Typer(help="Manage the store.", no_args_is_help=True)
    app.add_typer(system, name="system")

    @system.command("df")
    def system_df(
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
        format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    ) -> None:
        """Show disk usage of the store."""
        from ocibox import cache

        _render(cache.disk_usage(settings, verbose=verbose), format, kind="df")

    @app.command()
    def inspect(
        images_: Annotated[list[str], typer.Argument(metavar="IMAGE...")],
    ) -> None:
        """Show an image's manifest, config and layers as JSON."""
        import json

        from ocibox import cache

        _out(json.dumps([cache.inspect_image(settings, i) for i in images_], indent=4))

    @app.command()
    def verify(
        repair: Annotated[bool, typer.Option("--repair", help="drop what is broken so the next pull fetches it")] = False,
    ) -> None:
        """Re-hash blobs and check layer directories against the database."""
        from ocibox import cache

        problems = cache.verify(settings, repair=repair)
        for line in problems:
            _out(line)
        if problems and not repair:
            raise typer.Exit(1)

    # ------------------------------------------------------------------ layers
    image = typer.Typer(help="Manage images.", no_args_is_help=True)
    app.add_typer(image, name="image")

    @image.command("mount")
    def image_mount(image_: Annotated[str, typer.Argument(metavar="IMAGE")]) -> None:
        """Mount an image's rootfs read-only and print its path."""
        from ocibox import layers

        _out(str(layers.mount_image(settings, image_)))

    @image.command("umount")
    def image_umount(image_: Annotated[str, typer.Argument(metavar="IMAGE")]) -> None:
        """Unmount what 'image mount' mounted."""
        from ocibox import layers

        layers.umount_image(settings, image_)

    @app.command()
    def export(
        image_: Annotated[str, typer.Argument(metavar="IMAGE")],
        output: Annotated[Path, typer.Option("--output", "-o", help="tar file to write ('-' for stdout)")],
    ) -> None:
        """Write an image's flattened rootfs as a tar."""
        from ocibox import layers

        layers.export_image(settings, image_, output)

    # ------------------------------------------------------------------ run (help only; parsed by run_main)
    @app.command(
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
        add_help_option=False,
    )
    def run(ctx: typer.Context) -> None:
        """Run a command in a new container: ocibox run [OPTIONS] IMAGE [COMMAND] [ARG...]"""
        from ocibox.run import run_main

        code = run_main(settings, list(ctx.args))
        raise typer.Exit(code)

    return app


def _with(settings: Settings, **kw: Any) -> Settings:
    from ocibox._record import replace

    return replace(settings, **kw)


def _render(data: Any, format: str, *, kind: str, **kw: Any) -> None:
    """Tables for people, JSON for scripts. ``data`` is what the cache functions return."""
    import json

    from ocibox.errors import UsageError

    if format == "json":
        _out(json.dumps(data if not hasattr(data, "to_json") else data.to_json(), indent=4, default=str))
        return
    if format != "table":
        raise UsageError(f"invalid --format {format!r}: use table or json")
    from ocibox import cache

    for line in cache.render_table(kind, data, **kw):
        _out(line)
