"""``ocibox unshare``: a command (by default the user's shell) in the user namespace rootless ocibox
works in (podman unshare): root there is the user, the subordinate ids are the other users, and the
store's files can be read, changed and mounted (``ocibox image mount`` works there)."""

from __future__ import annotations

import os

from ocibox.errors import UsageError
from ocibox.options import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocibox.settings import Settings


def unshare(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (), (("command", "[COMMAND] [ARG...]", ""),), interspersed=False,
                description="Run a command (by default $SHELL) in the user namespace of rootless ocibox, as its "
                            "root: the store's files as containers see their owners, and a mount namespace of "
                            "its own (for 'ocibox image mount').").parse(argv)
    from ocibox import rootless

    if not rootless.is_rootless():
        raise UsageError(f"{prog} is for users without root: as root every file is reachable already")
    if not rootless.in_userns():
        rootless.warn_single(rootless.current(), settings.root)
        rootless.enter()
    command = ns["command"] or [os.environ.get("SHELL") or "/bin/sh"]
    env = dict(os.environ, OCIBOX_ROOT=str(settings.root))
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        from ocibox.errors import CommandNotFound, ContainerCommandError

        if isinstance(e, FileNotFoundError):
            raise CommandNotFound(f"{command[0]}: command not found") from None
        raise ContainerCommandError(f"cannot execute {command[0]!r}: {e.strerror}") from None
