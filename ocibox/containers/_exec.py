"""``ocibox exec``: a command in a running container, with what the container has (its config.json's
capabilities, seccomp filter, no_new_privs, rlimits, environment and user), never more: ``--privileged``
gives what ``run --privileged`` gives. Exit status: the command's; 126/127 when it cannot be executed;
125 when the container does not run."""

from __future__ import annotations

import os
import sys

from ocibox import _json as json
from ocibox import errors, ocispec
from ocibox import store as st
from ocibox.options import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocibox.settings import Settings

OPTIONS = (
    (("-d", "--detach"), "bool", "", "run the command in the background"),
    (("-i", "--interactive"), "bool", "", "keep stdin open"),
    (("-t", "--tty"), "bool", "", "allocate a pseudo-terminal"),
    (("-u", "--user"), "str", "USER[:GROUP]", "user to run as (default: the container's)"),
    (("-w", "--workdir"), "str", "DIR", "working directory (default: the container's)"),
    (("-e", "--env"), "list", "NAME[=VALUE]", "set an environment variable"),
    (("--env-file",), "list", "FILE", "read environment variables from a file"),
    (("--privileged",), "bool", "", "every capability of the bounding set, no seccomp filter"),
    (("--detach-keys",), "str", "KEYS", "(accepted for docker's scripts)"),
)


def exec_main(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, OPTIONS, (("container", "CONTAINER", ""), ("command", "COMMAND [ARG...]", "")),
                description="Execute a command in a running container.", interspersed=False).parse(argv)
    from ocibox import cgroups

    # The join's grace period paid in the background while the store is read (see MigrationWarmup; the
    # first cgroup write of a process costs 7-10 ms here), from the entry point on (cgroups.warm_for);
    # stopped before the fork, as run does.
    warmup = cgroups.warmup()
    try:
        return _exec(settings, ns, prog, warmup)
    finally:
        if warmup is not None:
            warmup.stop()


def _exec(settings: Settings, ns: dict[str, Any], prog: str, warmup: Any) -> int:
    from ocibox.containers import find
    from ocibox.run import merge_env, parse_env

    store = st.Store(settings.root)
    rec = find(store, ns["container"])
    if rec.state not in ("running", "paused") or not rec.alive:
        raise errors.UsageError(f"container {rec.name} is not running: start it first (ocibox start {rec.name})")
    if rec.state == "paused":
        raise errors.UsageError(f"container {rec.name} is paused: unpause it first")
    try:
        config = ocispec.load(str(store.container_dir(rec.id) / "config.json"))
    except ocispec.SpecError:
        raise errors.UsageError(f"container {rec.name} keeps no config.json: it cannot be joined") from None
    base = config.process
    assert base is not None
    env = parse_env(ns["env_file"], ns["env"], os.environ)
    caps = base.capabilities
    seccomp = None
    if ns["privileged"]:
        from ocibox.run import all_capabilities

        names = all_capabilities()
        caps = ocispec.Capabilities(bounding=names, effective=names, permitted=names)
    elif config.linux.seccomp is not None:
        from ocibox.run import seccomp_filter_of

        seccomp = seccomp_filter_of(config.linux.seccomp, str(store.root / "seccomp"))
    workdir = ns["workdir"] or base.cwd
    if not workdir.startswith("/"):
        raise errors.UsageError(f"{prog}: the working directory {workdir!r} must be an absolute path")
    process = ocispec.Process(args=tuple(ns["command"]), cwd=workdir, env=merge_env(base.env, env), user=base.user,
                              terminal=ns["tty"], capabilities=caps, rlimits=base.rlimits,
                              no_new_privileges=base.no_new_privileges)
    user = ns["user"] or config.annotations.get("io.ocibox.user")
    cgroup = None
    if rec.cgroup:
        from ocibox.cgroups import reopen

        cgroup = reopen(json.loads(rec.cgroup))
    from ocibox.run import exec_process

    if warmup is not None:
        warmup.stop()  # a fork waits for a cgroup migration in flight
    if ns["detach"]:
        return _detached(rec, process, cgroup, seccomp, user)
    proc = exec_process(rec.pid, rec.pid_start, process, cgroup=cgroup, seccomp=seccomp, user=user,
                        stdin_null=not ns["interactive"])
    sys.stdout.flush()
    return proc.wait(interactive=ns["interactive"])


def _detached(rec: st.ContainerRecord, process: ocispec.Process, cgroup: object, seccomp: object,
              user: str | None) -> int:
    """exec -d: the process runs on with no stdio of ours; this returns once it was exec'd."""
    from ocibox.run import exec_process

    null = os.open("/dev/null", os.O_RDWR)
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        exec_process(rec.pid, rec.pid_start, process, cgroup=cgroup, seccomp=seccomp, user=user)  # type: ignore[arg-type]
    finally:
        for fd, old in zip((0, 1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
        os.close(null)
    return 0
