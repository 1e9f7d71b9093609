"""The typer app of every verb but ``run`` and ``pull`` (whose options are parsed on their fast
paths): each command is a few lines that call one function and print what ``_render`` makes of it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ocibox.cli import CERT_DIR_HELP, GLOBAL_HELP, _out, _render, _with, pull_main
from ocibox.errors import UsageError
from ocibox.settings import Settings
from ocibox.units import parse_size


def build_app(settings: Settings) -> typer.Typer:
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

        rows = cache.list_images(settings, all_=all_)
        _print(rows, format, lambda: _render.images_table(rows, digests=digests, quiet=quiet_ids, no_trunc=no_trunc))

    @app.command()
    def rmi(
        images_: Annotated[list[str], typer.Argument(metavar="IMAGE...")],
        force: Annotated[bool, typer.Option("--force", "-f", help="remove all tags of the image")] = False,
    ) -> None:
        """Remove images (untag; delete what nothing else uses)."""
        from ocibox import cache

        for line in _render.rmi_lines(cache.remove_images(settings, images_, force=force)):
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

        until = cache.parse_prune_filters(filter_ or [])
        budget = parse_size(keep_storage, unlimited=False) if keep_storage is not None else None
        ask = not force and sys.stdin.isatty()
        result = cache.prune(settings, all_=all_, dry_run=dry_run, keep_storage=budget, until=until,
                             confirm=(lambda: _render.confirm_prune(all_)) if ask else None)
        for line in _render.prune_lines(result):
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

        data = cache.disk_usage(settings, verbose=verbose)
        _print(data, format, lambda: _render.df_table(data))

    @app.command()
    def inspect(
        images_: Annotated[list[str], typer.Argument(metavar="IMAGE...")],
    ) -> None:
        """Show an image's manifest, config and layers as JSON."""
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

        _out(str(layers.mount_image(settings, image_, warn=_warn)))

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

        layers.export_image(settings, image_, sys.stdout.buffer if str(output) == "-" else output)

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


def _warn(line: str) -> None:
    sys.stderr.write(f"ocibox: {line}\n")


def _print(data: Any, format: str, table: Callable[[], list[str]]) -> None:
    """Tables for people, JSON for scripts (``data`` as the cache verb returned it)."""
    if format == "json":
        _out(json.dumps(data, indent=4, default=str))
        return
    if format != "table":
        raise UsageError(f"invalid --format {format!r}: use table or json")
    for line in table():
        _out(line)
