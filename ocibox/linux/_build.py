"""Build ``_kernel.c`` into the extension module ``ocibox.linux._kernel`` (see syscalls)."""

from __future__ import annotations

import os

from ocibox.linux.syscalls import HERE, source_stamp


def build(cc: str | None = None, dest_dir: str = HERE) -> str:
    """Compile ``_kernel.c`` (into ``dest_dir``: beside itself), carrying the source's stamp, published by
    rename; the path of the module. ``OSError`` (with the compiler's own words) when it cannot be built."""
    import shutil
    import subprocess
    import sysconfig

    source = os.path.join(HERE, "_kernel.c")
    cc = cc or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError(2, "no C compiler: install gcc (Debian: apt-get install gcc libc6-dev python3-dev)")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise OSError(2, f"no Python headers in {include}: install them (Debian: apt-get install python3-dev)")
    dest = os.path.join(dest_dir, "_kernel" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    tmp = f"{dest}.{os.getpid()}.tmp"
    stamp = source_stamp()
    r = subprocess.run([cc, "-O2", "-Wall", "-shared", "-fPIC", f"-I{include}",
                        f'-DOCIBOX_KERNEL_STAMP="{stamp}"', "-o", tmp, source, "-ldl"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(22, f"building {source} with {cc} failed: {r.stderr.strip()[-800:]}")
    os.rename(tmp, dest)
    return dest
