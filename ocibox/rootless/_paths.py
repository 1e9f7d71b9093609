"""Where a user without root keeps things (XDG base directories, as podman does):

- store: ``$XDG_DATA_HOME/ocibox`` (``~/.local/share/ocibox``): ``ocibox.store.default_root``;
- runtime state (sockets and pid files of the network helpers): ``$XDG_RUNTIME_DIR/ocibox``, or a
  private directory ``/tmp/ocibox-<uid>`` (0700, the user's, never a symlink) when it is unset;
- config: ``$XDG_CONFIG_HOME/ocibox/config.toml`` (``~/.config/ocibox``), read instead of
  /etc/ocibox/config.toml when it exists; networks' files below it (``ocibox.network.config_dir``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ocibox import errors


def _host_uid() -> int:
    from ocibox.rootless._ids import current

    return current().uid if os.geteuid() == 0 else os.geteuid()


def config_home() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(xdg) / "ocibox"


def config_file() -> Path:
    return config_home() / "config.toml"


def runtime_dir() -> Path:
    """The user's runtime directory for ocibox, made (0700) if missing; refused when another user
    owns it or it is not a plain directory."""
    uid = _host_uid()
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isdir(base) and os.stat(base).st_uid in (uid, os.geteuid()):
        path = Path(base) / "ocibox"
    else:
        path = Path(f"/tmp/ocibox-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise errors.RootlessError(f"cannot make the runtime directory {path}: {e.strerror}; set XDG_RUNTIME_DIR "
                                   "to a directory of your own") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (uid, os.geteuid()) or st.st_mode & 0o077:
        raise errors.RootlessError(f"the runtime directory {path} is not a private directory of yours (mode "
                                   f"{stat.S_IMODE(st.st_mode):o}, owner {st.st_uid}); remove it or set "
                                   "XDG_RUNTIME_DIR")
    return path
