"""The monitor of a detached container: ``monitor.c``, built once into a small program (see its header for
what it does and its protocol), and the constants both sides of its attach socket use.

``binary()`` finds the program built from the current source (its name carries the source's hash), or
builds it with the system's C compiler under a lock: ``scripts/install-deps`` builds it at install time,
so a user never waits for it; a host without a compiler gets one line saying what to install.
"""

from __future__ import annotations

import os

# attach socket message kinds (the first byte of each SOCK_SEQPACKET message)
STDIN_DATA, STDOUT_DATA, STDERR_DATA, EXITED, STDIN_CLOSE, RESIZE = 0, 1, 2, 3, 4, 5

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "monitor.c")


def _source_hash() -> str:
    import hashlib

    with open(SOURCE, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _candidates(name: str) -> list[str]:
    """Where the program may be: beside the source (an install, a checkout), else a per-user cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [os.path.join(HERE, "bin", name), os.path.join(cache, "ocibox", name)]


STAMP = "current"  # beside each built program: "<source mtime_ns> <source size> <program name>"


def _stamped() -> str | None:
    """The program a stamp names for the source as it is now (one stat and one small read: no hash of
    the source on the path of ``run -d``)."""
    st = os.stat(SOURCE)
    for place in _candidates(STAMP):
        try:
            with open(place) as f:
                mtime, size, name = f.read(200).split()
        except (OSError, ValueError):
            continue
        path = os.path.join(os.path.dirname(place), name)
        if (int(mtime), int(size)) == (st.st_mtime_ns, st.st_size) and os.access(path, os.X_OK):
            return path
    return None


def _stamp(path: str) -> None:
    st = os.stat(SOURCE)
    tmp = os.path.join(os.path.dirname(path), f".{STAMP}.{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(f"{st.st_mtime_ns} {st.st_size} {os.path.basename(path)}\n")
        os.rename(tmp, os.path.join(os.path.dirname(path), STAMP))
    except OSError:
        pass  # a read-only install: the hash is computed each time, nothing else changes


def binary() -> str:
    """The path of ocibox-monitor for this source, built if needed."""
    stamped = _stamped()
    if stamped is not None:
        return stamped
    name = f"ocibox-monitor-{_source_hash()}"
    places = _candidates(name)
    for p in places:
        if os.access(p, os.X_OK):
            _stamp(p)
            return p
    from ocibox.errors import RuntimeSetupError

    problems = []
    for p in places:
        try:
            built = build(p)
            _stamp(built)
            return built
        except OSError as e:
            problems.append(f"{os.path.dirname(p)}: {e.strerror or e}")
        except RuntimeSetupError as e:
            problems.append(str(e))
            break
    raise RuntimeSetupError(f"ocibox-monitor (the monitor of detached containers) is not built and cannot be: "
                            f"{'; '.join(problems)}")


def build(dest: str) -> str:
    """Compile monitor.c into ``dest`` (under a lock, published by rename)."""
    import fcntl
    import shutil
    import subprocess

    from ocibox.errors import RuntimeSetupError

    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeSetupError("no C compiler to build it: install gcc (Debian: apt-get install gcc libc6-dev) "
                                "or run scripts/install-deps")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(dest, os.X_OK):
            return dest
        tmp = f"{dest}.{os.getpid()}.tmp"
        r = subprocess.run([cc, "-O2", "-Wall", "-o", tmp, SOURCE], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeSetupError(f"building ocibox-monitor with {cc} failed: {r.stderr.strip()[-500:]}")
        os.rename(tmp, dest)
    return dest
