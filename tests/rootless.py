"""Real unprivileged users for the rootless tests and benchmarks: made with useradd, given a subordinate
range in /etc/subuid and /etc/subgid (or none), and removed with everything they left.

``Users`` adds lines to /etc/subuid and /etc/subgid and removes them (only them) at ``close()``; it kills the users'
processes (by pid, found through /proc), removes their homes (userdel -r), their private runtime
directories (/tmp/ocibox-UID) and anything else they own under the paths it is told of.

``User.ocibox(*args)`` runs ``python -m ocibox`` as the user (runuser, a clean environment): the same
interpreter as the tests when the user may execute it, else the system's python3 of the same version,
with ``PYTHONPATH`` naming this checkout and the test interpreter's site-packages (copied to a directory
the user can read when they are not readable as they are).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBUID, SUBGID = Path("/etc/subuid"), Path("/etc/subgid")


def _as(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=60)


class User:
    def __init__(self, name: str, uid: int, gid: int, home: Path, subid: tuple[int, int] | None,
                 python: str, pythonpath: str) -> None:
        self.name, self.uid, self.gid, self.home, self.subid = name, uid, gid, home, subid
        self.python, self.pythonpath = python, pythonpath

    @property
    def store(self) -> Path:
        return self.home / ".local/share/ocibox"

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "PYTHONPATH": self.pythonpath, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(extra)
        return env

    def argv(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        e = env if env is not None else self.env()
        return ["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in e.items()),
                self.python, "-m", "ocibox", *args]

    def ocibox(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args, env=env), capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.home), input=input)

    def ok(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> str:
        r = self.ocibox(*args, timeout=timeout, env=env)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r.stdout

    def sh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A shell command as the user (its own environment)."""
        return subprocess.run(["runuser", "-u", self.name, "--", "env", "-i",
                               *(f"{k}={v}" for k, v in self.env().items()), "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout, cwd=str(self.home))

    def pids(self) -> list[int]:
        out = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if os.stat(f"/proc/{p}").st_uid == self.uid:
                        out.append(int(p))
                except OSError:
                    pass
        return out


class Users:
    """The users of a test module (see the module's docstring)."""

    def __init__(self, prefix: str = "oxrl", base: int = 400000) -> None:
        self.prefix, self.base = prefix, base
        self.saved = {p: p.read_bytes() if p.exists() else None for p in (SUBUID, SUBGID)}
        self.users: list[User] = []
        self.scratch: list[Path] = []
        self._python: tuple[str, str] | None = None

    def add(self, tag: str, subid_count: int = 65536) -> User:
        """A new user; ``subid_count`` subordinate uids and gids (0: none at all)."""
        name = f"{self.prefix}{tag}{os.getpid() % 10000}"
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name],
                       check=True, capture_output=True, timeout=60)
        pw = pwd.getpwnam(name)
        subid = None
        _drop_lines(name, pw.pw_uid)
        if subid_count:
            start = self.base + 100000 * len(self.users)
            subid = (start, subid_count)
            for path in (SUBUID, SUBGID):
                with open(path, "a") as f:
                    f.write(f"{name}:{start}:{subid_count}\n")
        python, pythonpath = self.python_for(name)
        user = User(name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir), subid, python, pythonpath)
        self.users.append(user)
        return user

    def python_for(self, name: str) -> tuple[str, str]:
        """An interpreter and PYTHONPATH that give the user this checkout and its dependencies."""
        site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        exe = os.path.realpath(sys.executable)
        if _as(name, "test", "-x", exe).returncode != 0:
            version = f"python{sys.version_info.major}.{sys.version_info.minor}"
            exe = next((p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}")
                        if _as(name, "test", "-x", p).returncode == 0), "")
            if not exe:
                raise RuntimeError(f"user {name} can execute no {version} (the tests' is {sys.executable})")
        paths = [str(REPO)]
        for s in dict.fromkeys(site):
            if _as(name, "test", "-r", os.path.join(s, "zstandard")).returncode == 0:
                paths.append(s)
            else:  # not readable by others (a venv under /root): a copy they can read
                copy = Path(tempfile.mkdtemp(prefix="ocibox-rootless-site-"))
                shutil.copytree(s, copy / "site", symlinks=True)
                subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
                os.chmod(copy, 0o755)
                self.scratch.append(copy)
                paths.append(str(copy / "site"))
        if _as(name, "test", "-r", str(REPO / "ocibox" / "__init__.py")).returncode != 0:
            raise RuntimeError(f"user {name} cannot read {REPO}: the rootless tests need a checkout others can read")
        return exe, ":".join(paths)

    def kill(self, user: User) -> None:
        for _ in range(50):
            pids = user.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def close(self) -> list[str]:
        """Remove every user and what they left, their lines of /etc/subuid and /etc/subgid included.
        Returns problems."""
        problems = []
        for user in self.users:
            self.kill(user)
            _unmount_under(user.home)
            r = subprocess.run(["userdel", "-r", "-f", user.name], capture_output=True, text=True, timeout=60)
            if r.returncode not in (0, 12):  # 12: the home could not be removed (removed below)
                problems.append(f"userdel {user.name}: {r.stderr.strip()}")
            for leftover in (user.home, Path(f"/tmp/ocibox-{user.uid}")):
                if leftover.exists():
                    shutil.rmtree(leftover, ignore_errors=True)
                if leftover.exists():
                    problems.append(f"{leftover} left behind")
        # Only this object's lines go (never a snapshot written back: another test session's users may
        # have added theirs meanwhile); a file that did not exist before goes if nothing else is in it.
        for user in self.users:
            _drop_lines(user.name, user.uid)
        for path, data in self.saved.items():
            if data is None and path.exists() and not path.read_text().strip():
                path.unlink()
        for d in self.scratch:
            shutil.rmtree(d, ignore_errors=True)
        return problems


def _drop_lines(name: str, uid: int) -> None:
    """useradd may add a range of its own (SUB_UID_COUNT in login.defs): the test sets its own."""
    for path in (SUBUID, SUBGID):
        if path.exists():
            lines = path.read_text().splitlines(keepends=True)
            path.write_text("".join(x for x in lines if x.split(":")[0] not in (name, str(uid))))


def _unmount_under(path: Path) -> None:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for mp in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)


def owned_by(root: Path, uids: set[int]) -> list[str]:
    """Paths under ``root`` whose owner is one of ``uids`` (lstat)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            try:
                if os.lstat(p).st_uid in uids:
                    out.append(p)
            except OSError:
                pass
    return out
