"""The start of a container created with an exec fifo (runc's exec.fifo), from any process: kept apart
from the executor so that ``ocibox-runtime start`` imports nothing else of it."""

from __future__ import annotations

import os

from ocibox import errors


def start_fifo(fifo: str) -> None:
    """Start a container created with ``fifo`` (from any process): opening the fifo for reading lets
    its PID 1's blocked open for writing go on; it writes one byte and execs."""
    import select

    try:
        # Non-blocking: an open for reading must not hang on a PID 1 that died meanwhile.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.UsageError("the container is not in the created state (it was started already)") from None
    try:
        import time

        deadline = time.monotonic() + 10.0
        while True:
            # Until PID 1's open for writing returns there is no writer, and a read says EOF: retry.
            select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            try:
                if os.read(fd, 1):
                    break
            except BlockingIOError:
                pass
            if time.monotonic() > deadline:
                raise errors.RuntimeSetupError("the container's init did not take the start (it is gone)")
            time.sleep(0.001)
    finally:
        os.close(fd)
        try:  # not contextlib.suppress: contextlib alone is a third of ocibox-runtime start's imports
            os.unlink(fifo)
        except FileNotFoundError:
            pass
