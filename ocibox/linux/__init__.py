"""The Linux seam: every call into the kernel that Python's ``os`` lacks, and every parser of
``/proc``, in one package below all others. It imports no ocibox package, so the layer store, the
store and the cache use it without importing the runner (DESIGN.md, "the Linux seam is its own room").

Modules (each imported only when used; nothing here is loaded by importing the package)::

    syscalls   mount, umount, pivot_root, openat2, unshare, setns, prctl, capset/capget,
               close_range, sethostname, socket; the flag constants of those calls
    seccomp    libseccomp through ctypes: build a filter, export its BPF, install a BPF program
    bpf        bpf(2): load and attach a cgroup-v2 device program
    proc       one parser each for /proc/PID/mountinfo, /proc/PID/cgroup, /proc/PID/stat start
               times and /proc/PID/status capability sets

Every function raises ``OSError`` with ``errno`` set, like the ``os`` module, so callers handle one
kind of error.
"""
