"""Runner: ``ocibox run`` (RunSpec, namespaces, rootfs and pivot_root, cgroups v1/v2, the process).

This package is on the warm path of ``ocibox run``: importing it costs nothing; the parts load
when used. Public surface::

    run_main(settings, argv) -> int                    the CLI verb (argv: everything after 'run')
    RunSpec.from_image(config, flags) -> RunSpec       pure: docker's entrypoint/cmd/env/user rules
    create(spec, rootfs, state_dir, ...) -> Container  the container made, PID 1 waiting at the gate;
                                                       Container.start(), .wait(), .close()
    run_container(spec, rootfs, state_dir, ...) -> int create + start + wait + close: the exit status
    start_detached(settings, store, record) -> int     a detached container under a new monitor (PID 1's pid)
    monitored(dir) / DEFAULT_SETTINGS / LOG, EXIT, ATTACH   a detached container's monitor and its files
    exec_process(pid1, start, process, ...) -> Exec    a new process in a running container
    check_name(name) / parse_signal(text)              docker's container name rule, signal names
    parse_env / merge_env / all_capabilities / seccomp_filter_of   exec's share of the run flags' rules
    run_hooks(hooks, state, kind) / HookError          OCI hooks with the state on stdin (ocibox-runtime's
                                                       poststart and poststop; the rest run inside create)
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)


if TYPE_CHECKING:
    from typing import Any

    from ocibox.run._config import DEFAULT_MOUNTS, MASKED_PATHS, READONLY_PATHS
    from ocibox.run._detach import ATTACH, DEFAULT_SETTINGS, EXIT, LOG, monitored, start_detached
    from ocibox.run._devices import config_rules
    from ocibox.run._exec import Exec, exec_process
    from ocibox.run._fifo import start_fifo
    from ocibox.run._flags import parse_env, parse_run_args
    from ocibox.run._hardening import all_capabilities
    from ocibox.run._hooks import HookError, run_hooks
    from ocibox.run._init import exit_status
    from ocibox.run._plain import NetFlags, check_name, parse_signal
    from ocibox.run._process import Container, create, run_container
    from ocibox.run._seccomp import SECCOMP_ACTIONS, SECCOMP_OPS, seccomp_filter_of
    from ocibox.run._spec import CAPS, Mount, RunFlags, RunSpec, merge_env
    from ocibox.settings import Settings

__all__ = [
    "ATTACH",
    "CAPS",
    "DEFAULT_MOUNTS",
    "DEFAULT_SETTINGS",
    "EXIT",
    "LOG",
    "MASKED_PATHS",
    "READONLY_PATHS",
    "SECCOMP_ACTIONS",
    "SECCOMP_OPS",
    "Container",
    "Exec",
    "HookError",
    "Mount",
    "NetFlags",
    "RunFlags",
    "RunSpec",
    "all_capabilities",
    "check_name",
    "config_rules",
    "create",
    "exec_process",
    "exit_status",
    "merge_env",
    "monitored",
    "parse_env",
    "parse_run_args",
    "parse_signal",
    "run_container",
    "run_hooks",
    "run_main",
    "seccomp_filter_of",
    "start_detached",
    "start_fifo",
]


def run_main(settings: Settings, argv: list[str], prog: str = "ocibox run") -> int:
    """``ocibox run [OPTIONS] IMAGE [COMMAND] [ARG...]``; returns the exit status."""
    from ocibox import cgroups

    # Started by the entry point (cgroups.warm_for), else now, before the rest of the runner is imported:
    # see MigrationWarmup (10 to 30 ms less).
    warmup = cgroups.warmup()
    try:
        from ocibox.run._main import main

        return main(settings, argv, warmup=warmup, prog=prog)
    finally:
        if warmup is not None:
            warmup.stop()


_LAZY = {
    "Mount": "ocibox.run._spec", "RunFlags": "ocibox.run._spec", "RunSpec": "ocibox.run._spec",
    "parse_run_args": "ocibox.run._flags", "Container": "ocibox.run._process", "create": "ocibox.run._process",
    "run_container": "ocibox.run._process",
    **dict.fromkeys(("ATTACH", "DEFAULT_SETTINGS", "EXIT", "LOG", "monitored", "start_detached"), "ocibox.run._detach"),
    "Exec": "ocibox.run._exec", "exec_process": "ocibox.run._exec", "check_name": "ocibox.run._plain", "NetFlags": "ocibox.run._plain",
    "merge_env": "ocibox.run._spec", "parse_env": "ocibox.run._flags", "start_fifo": "ocibox.run._fifo",
    "exit_status": "ocibox.run._init", "CAPS": "ocibox.run._spec", "DEFAULT_MOUNTS": "ocibox.run._config",
    "MASKED_PATHS": "ocibox.run._config", "READONLY_PATHS": "ocibox.run._config",
    "SECCOMP_ACTIONS": "ocibox.run._seccomp", "config_rules": "ocibox.run._devices", "SECCOMP_OPS": "ocibox.run._seccomp", "all_capabilities": "ocibox.run._hardening",
    "seccomp_filter_of": "ocibox.run._seccomp", "parse_signal": "ocibox.run._plain",
    "run_hooks": "ocibox.run._hooks", "HookError": "ocibox.run._hooks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        # __import__ with a fromlist returns the submodule itself: not importlib (and warnings), 0.4 ms
        return getattr(__import__(_LAZY[name], fromlist=[name]), name)
    raise AttributeError(f"module 'ocibox.run' has no attribute {name!r}")
