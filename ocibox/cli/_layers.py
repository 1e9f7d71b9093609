"""The layer store's verbs: ``image mount``, ``image umount``, ``export``."""

from __future__ import annotations

import sys
from pathlib import Path

from ocibox.cli import _out
from ocibox.options import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocibox.settings import Settings

IMAGE = (("image", "IMAGE", ""),)


def mount(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (), IMAGE, description="Mount an image's rootfs read-only and print its path.").parse(argv)
    from ocibox import layers

    _out(str(layers.mount_image(settings, ns["image"], warn=_warn)))


def umount(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (), IMAGE, description="Unmount what 'image mount' mounted.").parse(argv)
    from ocibox import layers

    layers.umount_image(settings, ns["image"])


def export(settings: Settings, argv: list[str], prog: str) -> None:
    parser = Parser(prog, ((("-o", "--output"), "str", "FILE", "tar file to write ('-' for stdout); required"),),
                    IMAGE, description="Write an image's flattened rootfs as a tar.", defaults={"output": None})
    ns = parser.parse(argv)
    if ns["output"] is None:
        raise parser.error("-o, --output is required")
    from ocibox import layers

    layers.export_image(settings, ns["image"], sys.stdout.buffer if ns["output"] == "-" else Path(ns["output"]))


def _warn(line: str) -> None:
    sys.stderr.write(f"ocibox: {line}\n")
