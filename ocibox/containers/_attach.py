"""``ocibox attach`` (and ``start -a``): this terminal to a detached container, through its monitor's
attach socket (see ocibox/monitor/monitor.c for the messages). With a terminal, stdin goes in raw and the
detach keys (docker's ctrl-p ctrl-q) leave the container running."""

from __future__ import annotations

import os
import signal
import socket
import struct

from ocibox import errors
from ocibox import store as st
from ocibox._contextlib import suppress
from ocibox.monitor import EXITED, RESIZE, STDERR_DATA, STDIN_CLOSE, STDIN_DATA, STDOUT_DATA
from ocibox.run import ATTACH

DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def connect(store: st.Store, rec: st.ContainerRecord) -> socket.socket:
    """A connection to the container's monitor (its socket, by a short path through a directory fd)."""
    cdir = os.open(store.container_dir(rec.id), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            s.connect(f"/proc/self/fd/{cdir}/{ATTACH}")
        except OSError:
            s.close()
            raise errors.UsageError(f"cannot attach to container {rec.name}: it is not running under a monitor "
                                    "(only a running detached container can be attached)") from None
        return s
    finally:
        os.close(cdir)


def attach(store: st.Store, rec: st.ContainerRecord, *, stdin: bool, tty: bool) -> int | None:
    """Relay until the container exits (its exit status) or the detach keys are typed (None)."""
    import select
    import termios
    import tty as ttymod

    s = connect(store, rec)
    restore = None
    if tty and stdin and os.isatty(0):
        restore = termios.tcgetattr(0)
        ttymod.setraw(0)

    def resize(*_: object) -> None:
        import fcntl

        with suppress(OSError):
            rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8))
            s.send(bytes([RESIZE]) + struct.pack("HH", rows, cols))

    if tty:
        signal.signal(signal.SIGWINCH, resize)
        resize()
    inputs = [s] + ([0] if stdin else [])
    held = b""
    try:
        while True:
            ready, _, _ = select.select(inputs, [], [])
            if s in ready:
                msg = s.recv(1 << 17)
                if not msg:
                    return None  # the monitor went away
                kind, data = msg[0], msg[1:]
                if kind == STDOUT_DATA:
                    _write(1, data)
                elif kind == STDERR_DATA:
                    _write(2, data)
                elif kind == EXITED:
                    return int(data or b"0")
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    s.send(bytes([STDIN_CLOSE]))
                    inputs.remove(0)
                    continue
                if tty:
                    # ctrl-p is held back until the next key says whether it starts the detach keys
                    data, held = held + data, b""
                    if DETACH_KEYS in data:
                        before = data[: data.index(DETACH_KEYS)]
                        if before:
                            s.send(bytes([STDIN_DATA]) + before)
                        return None
                    if data.endswith(DETACH_KEYS[:1]):
                        data, held = data[:-1], DETACH_KEYS[:1]
                if data:
                    s.send(bytes([STDIN_DATA]) + data)
    finally:
        if restore is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, restore)
        s.close()


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
