"""``start`` and ``delete``, the calls every container pays besides ``create`` (a containerd task makes
create, start, delete and delete --force): apart from the other commands so that they load only this
module, ``ocibox.runtime._state`` and, for start, ``ocibox.run._fifo``. Neither imports json (with re and
enum), signal (enum), contextlib (collections, functools) nor the cgroup managers for a container whose
PID 1 is gone: its state is the brief, and its cgroup, empty, goes with its rmdirs."""

from __future__ import annotations

import os

from ocibox.errors import OciboxError, UsageError
from ocibox.options import Parser
from ocibox.runtime import _state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocibox import ocispec
    from ocibox.runtime import Log
    from ocibox.runtime._state import State

ID = (("id", "CONTAINER_ID", ""),)


def _hooks(state: State, hooks: tuple[ocispec.Hook, ...], what: str, status: str = "") -> None:
    """Hooks the runtime itself runs (poststart, poststop), in its own namespaces, the state on stdin."""
    import json

    from ocibox.run import run_hooks

    run_hooks(hooks, json.dumps(state.oci(status)).encode(), what)


def _remove_dir(path: str) -> None:
    """A container's state dir (state.json, exec.fifo: flat), without importing shutil (2 ms a call)."""
    try:
        for name in os.listdir(path):
            try:
                os.unlink(os.path.join(path, name))
            except IsADirectoryError:
                import shutil

                shutil.rmtree(os.path.join(path, name), ignore_errors=True)
        os.rmdir(path)
    except FileNotFoundError:
        pass


def start(root: str, argv: list[str], log: Log) -> int:
    from ocibox.run import start_fifo

    ns = Parser("ocibox-runtime start", (), ID).parse(argv)
    state = _state.load_brief(root, ns["id"])
    status = state.status()
    if status != "created":
        raise UsageError(f"cannot start a container that is {status}: {ns['id']}")
    start_fifo(state.fifo)
    config = _config(state) if "poststart" in state.hooks else None
    if config is not None and config.hooks.poststart:
        try:
            _hooks(state, config.hooks.poststart, "poststart")
        except OciboxError:
            # runc: a failing poststart hook fails start and the container with it
            try:
                _delete(state, force=True, log=log, hooks=False)
            except OciboxError:
                pass
            raise
    return 0


def _config(state: State) -> ocispec.Spec | None:
    from ocibox import ocispec

    try:
        return ocispec.load(os.path.join(str(state.data.get("bundle", "")), "config.json"))
    except OciboxError:
        return None


def _delete(st: State, *, force: bool, log: Log, hooks: bool = True) -> None:
    status = st.status()
    if status not in ("stopped", "created") and not force:
        raise UsageError(f"cannot delete container {st.id} that is not stopped: {status}")
    cg = None
    if st.alive():
        sigkill = 9  # signal.SIGKILL, without the signal module's enums
        cg = st.cgroup()
        if cg is not None:
            try:
                cg.freeze(False)
            except OciboxError:
                pass
            cg.kill_all(sigkill)
        try:
            os.kill(st.pid, sigkill)
        except ProcessLookupError:
            pass
        _wait_gone(st)
    for problem in _remove_cgroup(st, cg):
        log.write("warning", problem)
    config = _config(st) if hooks and "poststop" in st.hooks else None
    _remove_dir(st.dir)
    if config is not None and hooks and config.hooks.poststop:
        try:
            _hooks(st, config.hooks.poststop, "poststop", "stopped")
        except OciboxError as e:  # the spec: a failing poststop hook is a warning; delete goes on
            log.write("warning", str(e))


def _remove_cgroup(st: State, cg: Any) -> list[str]:
    """The container's cgroup removed; problems as lines. An empty cgroup (PID 1 gone with its pid
    namespace) needs only its rmdirs: its manager (and its imports) only for one that still holds
    processes, whose destroy kills them and retries."""
    if cg is None:
        try:
            for d in st.rmdirs():
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
            return []
        except OSError:  # EBUSY: processes left (a container without its own pid namespace)
            cg = st.cgroup()
    return cg.destroy() if cg is not None else []


def _wait_gone(st: State, timeout: float = 10.0) -> None:
    import select

    try:
        pidfd = os.pidfd_open(st.pid)
    except ProcessLookupError:
        return
    try:
        select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)


def delete(root: str, argv: list[str], log: Log) -> int:
    ns = Parser("ocibox-runtime delete", ((("-f", "--force"), "bool", "", "kill it if it runs; harmless for an id that "
                                                                    "is gone"),), ID).parse(argv)
    try:
        st = _state.load_brief(root, ns["id"])
    except _state.NotFound:
        if ns["force"]:
            return 0
        raise
    _delete(st, force=ns["force"], log=log)
    return 0
