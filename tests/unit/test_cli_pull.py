"""``ocibox pull``'s options (ocibox.options; the pull path never imports typer, click or httpx before it pulls)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ocibox.cli._registry import pull as pull_main
from ocibox.errors import UsageError
from ocibox.settings import Settings


@pytest.mark.parametrize("argv,match", [
    ([], "an IMAGE is required"),
    (["--bogus", "img"], "unrecognized option '--bogus'"),
    (["a", "b"], "one IMAGE only"),
    (["--platform"], "--platform needs a value"),
    (["--platform=linux/amd64/v9/x", "img"], "platform"),
])
def test_errors_name_what_is_wrong(argv: list[str], match: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=match):
        pull_main(Settings(root=tmp_path), argv)


def test_help_and_no_typer_on_the_way(tmp_path: Path) -> None:
    code = ("import sys; from ocibox.cli import main; sys.argv = ['ocibox', 'pull', '--help']\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('typer' in sys.modules, 'click' in sys.modules, 'httpx' in sys.modules)")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert cp.stdout.startswith("usage: ocibox pull [OPTIONS] IMAGE") and "--cert-dir DIR" in cp.stdout
    assert cp.stdout.splitlines()[-1] == "False False False"
