"""Terminals made inside a container and their master handed out (runc's console socket): a pty opened
from the container's own devpts instance, so that its programs see /dev/pts/N and /dev/console of their
own, and the master fd passed over a unix socket with SCM_RIGHTS."""

from __future__ import annotations

import fcntl
import os
import struct

TIOCGPTN = 0x80045430  # the pty's number
TIOCSPTLCK = 0x40045431  # (un)lock the slave
TIOCGPTPEER = 0x5441  # open the slave from the master, without a path lookup (Linux 4.13)
TIOCSCTTY = 0x540E


def open_master(ptmx: str) -> tuple[int, int, int]:
    """(master, slave, number) of a new pty of the devpts instance whose ptmx is ``ptmx``."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        os.close(master)
        raise
    return master, slave, number


def make_controlling(slave: int) -> None:
    """The slave as this process's controlling terminal and stdio (call after setsid)."""
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)


def send_fd(sock: int, fd: int, name: str = "") -> None:
    """Send ``fd`` (with ``name`` as the message, as runc sends the pty's path) over a unix socket fd."""
    import socket

    s = socket.socket(fileno=os.dup(sock))
    try:
        socket.send_fds(s, [name.encode() or b"\0"], [fd])
    finally:
        s.close()


def recv_fd(sock: int) -> int:
    """The fd sent with ``send_fd``; OSError if the other side closed without sending one."""
    import socket

    s = socket.socket(fileno=os.dup(sock))
    try:
        _, fds, _, _ = socket.recv_fds(s, 4096, 1)
    finally:
        s.close()
    if not fds:
        raise OSError(5, "no terminal came from the container")
    return fds[0]
