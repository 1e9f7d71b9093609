"""``python -m ocibox.linux``: build the C extension of the raw syscalls (``_kernel.c``) beside its source.
scripts/install-deps runs it; without it ocibox uses the same calls through ctypes (see syscalls)."""

import sys

from ocibox.linux._build import build

try:
    print(build())
except OSError as e:
    sys.exit(f"ocibox.linux: {e}")
