"""What happens to a container after it was made: start, stop, kill, pause, wait, rename, rm, the cleanup
its monitor runs when PID 1 exits (exit status, OOM, teardown, restart policy, --rm), and the repair of a
record whose container died with nobody to record it (a killed monitor, a reboot).

Every verb finds the container in the store, checks that its recorded PID 1 is still the same process
(pid and start time: never a reused pid), and acts on the kernel's objects directly (signals through a
pidfd, the cgroup reopened from the record): no daemon is asked anything.
"""

from __future__ import annotations

import os
import sys
import time

from ocibox import _json as json
from ocibox import errors
from ocibox import store as st
from ocibox._contextlib import suppress
from ocibox.linux import proc
from ocibox.run import DEFAULT_SETTINGS, EXIT, NetFlags, monitored, parse_signal, start_detached

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any

    from ocibox.settings import Settings
else:
    import _signal as signal  # not signal: its Signals enum imports enum (~3 ms of a stop)

#: docker's exit code for a container whose end nobody saw (daemon crash, reboot)
UNKNOWN_EXIT = 255


def conf(rec: st.ContainerRecord) -> dict[str, Any]:
    return {**DEFAULT_SETTINGS, **rec.setting_map}


def status_word(rec: st.ContainerRecord) -> str:
    """docker's State.Status: created, running, paused, restarting, exited, dead."""
    return rec.state


# ----------------------------------------------------------------------------- signals
def signal_pid1(rec: st.ContainerRecord, sig: int) -> bool:
    """Send ``sig`` to the container's PID 1 if it is still the recorded process; False if it is gone.
    A pidfd is opened first and the start time checked after: the signal can never reach a reused pid."""
    if rec.pid <= 0:
        return False
    try:
        pidfd = os.pidfd_open(rec.pid)
    except ProcessLookupError:
        return False
    try:
        if proc.start_time(rec.pid) != rec.pid_start:
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def wait_pid_exit(rec: st.ContainerRecord, timeout: float | None) -> bool:
    """Wait until the container's PID 1 is gone (it need not be our child); True if it is."""
    import select

    if rec.pid <= 0:
        return True
    try:
        pidfd = os.pidfd_open(rec.pid)
    except ProcessLookupError:
        return True
    try:
        if proc.start_time(rec.pid) != rec.pid_start:
            return True
        ready, _, _ = select.select([pidfd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(pidfd)


def _let_go(store: st.Store, rec: st.ContainerRecord, timeout: float = 30.0) -> None:
    """Before a container's record goes: its monitor must have let go of it. A cleanup may be running
    (the exit is recorded before it ends), or a restart may be in its back-off or starting a new PID 1:
    no restart from now on (``stopping``), whatever runs by then is killed, and the lock waited for."""
    cdir = store.container_dir(rec.id)
    if not monitored(cdir):
        return
    st.update_container(store, rec.id, stopping=True)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while monitored(cdir) and time.monotonic() < deadline:
        try:
            now = st.get_container(store, rec.id)
        except st.NoSuchContainer:
            return
        if now.alive:
            _kill_all(now, signal.SIGKILL)
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def wait_cleanup(store: st.Store, rec: st.ContainerRecord, timeout: float = 30.0) -> None:
    """After PID 1 exited: wait until its monitor's cleanup released the container (its lock)."""
    cdir = store.container_dir(rec.id)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while monitored(cdir):
        if time.monotonic() > deadline:
            raise errors.RuntimeSetupError(f"container {rec.id[:12]}: its monitor has not finished after "
                                           f"{timeout:g} s; see {cdir / 'monitor.err'}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _wait_exit_file(store: st.Store, rec: st.ContainerRecord, timeout: float = 5.0) -> tuple[int, float] | None:
    """After PID 1 exited: the status and time its monitor writes once it reaped it (a few ms), None
    if no monitor writes one (it is gone, or it does not come within ``timeout``)."""
    cdir = store.container_dir(rec.id)
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        written = _exit_file(store, rec.id)
        if written is not None and written[1] >= rec.started_at:
            return written
        if time.monotonic() > deadline or not monitored(cdir):
            written = _exit_file(store, rec.id)  # the monitor may have written it just before it ended
            return written if written is not None and written[1] >= rec.started_at else None
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


# ----------------------------------------------------------------------------- repair and cleanup
def _exit_file(store: st.Store, cid: str) -> tuple[int, float] | None:
    try:
        with open(store.container_dir(cid) / EXIT) as f:
            code, ns = f.read().split()
        return int(code), int(ns) / 1e9
    except (OSError, ValueError):
        return None


def _teardown(store: st.Store, rec: st.ContainerRecord) -> bool:
    """Remove what a run of the container held on the host (its cgroups, its networks: CNI DEL, netns,
    ports); True if it was OOM-killed. A DEL that fails is left for the next repair (a warning)."""
    from ocibox.cgroups import remove_leftovers, reopen

    oom = False
    if rec.cgroup:
        with suppress(ValueError, OSError, errors.OciboxError):
            cg = reopen(json.loads(rec.cgroup))
            oom = cg.oom_kills() > 0
            cg.destroy()
    remove_leftovers(rec.id)
    cdir = store.container_dir(rec.id)
    if (cdir / "usernet.json").exists():  # a user-mode network (without root): its helper, if still there
        from ocibox import network

        network.stop_usernet(cdir)
    elif on_networks(rec):
        from ocibox import network

        try:
            network.detach(_settings(store), rec.id)
        except errors.OciboxError as e:
            sys.stderr.write(f"ocibox: warning: container {rec.name}: {e} (the next 'ocibox ps' tries again)\n")
    return oom


def on_networks(rec: st.ContainerRecord) -> bool:
    """The container runs on CNI networks (its network is the network room's to tear down)."""
    net = conf(rec).get("net")
    return isinstance(net, dict) and bool(net) and NetFlags.from_json(net).mode() == "bridge"


def network_view(store: st.Store, rec: st.ContainerRecord, recorded: set[str] | None = None) -> Any:
    """The network room's Attachments of a running container on networks, else None (the network room
    is imported only when it holds a record of this container). ``recorded``: the ids it keeps records
    of, when the caller listed them already (``ps`` asks for every row)."""
    if rec.state not in ("running", "paused"):
        return None
    if rec.id not in (_network_records(store) if recorded is None else recorded):
        return None
    from ocibox import network

    return network.attachments(_settings(store), rec.id)


def _settings(store: st.Store) -> Settings:
    """The network room's view of a store (it needs only the root)."""
    from ocibox.settings import Settings

    return Settings(root=store.root)


def repair(store: st.Store, rec: st.ContainerRecord, guessed: int = UNKNOWN_EXIT) -> st.ContainerRecord:
    """A record that says the container runs when its PID 1 is gone and no monitor looks after it (the
    monitor was killed, the host rebooted, ocibox was killed mid-start): record it as exited, with the
    exit its monitor wrote if there is one, and remove its cgroups. Returns the record as it is now."""
    if rec.state not in ("created", "running", "paused") or rec.alive or not rec.detached:
        return rec
    if monitored(store.container_dir(rec.id)):
        return rec  # the monitor's cleanup is on it right now
    written = _exit_file(store, rec.id)
    code, finished = written if written is not None and written[1] >= rec.started_at else (guessed, time.time())
    oom = _teardown(store, rec)
    if rec.state == "created" and rec.started_at == 0:
        st.update_container(store, rec.id, pid=0)  # never started: it stays Created
    else:
        st.finish_container(store, rec.id, code, remove=False, finished_at=finished, oom_killed=oom)
    return st.get_container(store, rec.id)


def repair_all(store: st.Store) -> tuple[list[st.ContainerRecord], set[str]]:
    """Repair every detached container whose record went stale (the next command after a crash), and
    take containers that are gone (a foreground run killed with SIGKILL, a reboot) off their networks.
    Returns every container's record as it is now, and the ids the network room keeps records of."""
    live = []
    recs = st.list_containers(store)
    for i, rec in enumerate(recs):
        if rec.detached and rec.state in ("running", "paused") and not rec.alive:
            recs[i] = repair(store, rec)
        elif rec.state in ("running", "paused", "created") and rec.alive:
            live.append(rec.id)
    recorded = _network_records(store)
    if recorded - set(live):
        from ocibox import network

        with suppress(errors.OciboxError):
            network.repair(_settings(store), live, still_live=lambda cid: st.container_live(store, cid))
        recorded = _network_records(store)
    return recs, recorded


def _network_records(store: st.Store) -> set[str]:
    """The ids the network room keeps records of."""
    from ocibox import network

    return network.recorded(_settings(store))


def cleanup(settings: Settings, cid: str, lock_fd: int) -> int:
    """The monitor's exit command, run when the container's PID 1 has exited (it holds the monitor lock,
    ``lock_fd``): record the exit (status, time, OOM), remove the cgroups, then apply the restart policy
    (start it again under a new monitor, after docker's back-off) or --rm."""
    store = st.Store(settings.root)
    try:
        rec = st.get_container(store, cid)
    except st.NoSuchContainer:
        return 0  # removed meanwhile (rm -f)
    written = _exit_file(store, cid)
    code, finished = written if written is not None else (UNKNOWN_EXIT, time.time())
    oom = _teardown(store, rec)
    st.finish_container(store, cid, code, remove=False, finished_at=finished, oom_killed=oom)
    c = conf(rec)
    policy: dict[str, Any] = c["restart"] if isinstance(c["restart"], dict) else {"name": "no", "max": 0}
    name, most = str(policy.get("name", "no")), int(policy.get("max", 0))
    again = not rec.stopping and (name in ("always", "unless-stopped") or
                                  (name == "on-failure" and code != 0 and (most == 0 or rec.restart_count < most)))
    if again:
        ran = finished - rec.started_at if rec.started_at else 0.0
        count = 0 if ran > 10 else rec.restart_count  # docker resets the back-off after 10 s of running
        until = time.monotonic() + (min(0.1 * 2 ** min(count, 10), 60.0) if count else 0.0)
        while True:  # the back-off, cut short by a stop or rm
            try:
                rec = st.get_container(store, cid)
            except st.NoSuchContainer:
                return 0
            if rec.stopping:  # 'stop' or 'rm -f' came during the back-off
                return 0
            if time.monotonic() >= until:
                break
            time.sleep(min(0.1, until - time.monotonic()))
        st.update_container(store, cid, restart_count=rec.restart_count + 1)
        try:
            start_detached(settings, store, st.get_container(store, cid), lock_fd=lock_fd)
        except errors.OciboxError as e:
            st.finish_container(store, cid, e.exit_code, remove=False)
        return 0
    if c.get("auto_remove"):
        remove(store, st.get_container(store, cid), lock_held=True)
    return 0


# ----------------------------------------------------------------------------- the verbs
def start(settings: Settings, store: st.Store, rec: st.ContainerRecord) -> st.ContainerRecord:
    """docker start: a stopped (or created) container runs again with its same writable layer."""
    rec = repair(store, rec)
    if rec.state in ("running", "paused") and rec.alive:
        return rec
    if not rec.detached:
        raise errors.UsageError(f"container {rec.name} ran in the foreground and its writable layer went with it; "
                                "run the image again (ocibox run -d keeps a container to start later)")
    wait_cleanup(store, rec)  # a stop returns before the monitor's cleanup of the last run is done
    st.update_container(store, rec.id, stopping=False)
    start_detached(settings, store, rec)
    return st.get_container(store, rec.id)


def stop(store: st.Store, rec: st.ContainerRecord, timeout: float | None = None,
         sig: int | None = None) -> st.ContainerRecord:
    """docker stop: the stop signal (--stop-signal, the image's StopSignal, SIGTERM), then SIGKILL after
    the timeout (--stop-timeout, default 10 s); returns once the exit is recorded. No restart follows."""
    rec = repair(store, rec)
    c = conf(rec)
    st.update_container(store, rec.id, stopping=True)
    if rec.state not in ("running", "paused") or not rec.alive:
        return st.get_container(store, rec.id)
    timeout = float(c["stop_timeout"]) if timeout is None else timeout
    sig = parse_signal(str(c["stop_signal"])) if sig is None else sig
    if rec.state == "paused":
        unpause(store, rec)  # a frozen process cannot act on a signal
    killed = False
    if not signal_pid1(rec, sig) or not wait_pid_exit(rec, timeout):
        killed = _kill_all(rec, signal.SIGKILL)
        wait_pid_exit(rec, 10.0)
    return _after_exit(store, rec, 137 if killed else 128 + sig, stopped=True)


def _kill_all(rec: st.ContainerRecord, sig: int) -> bool:
    """``sig`` to every process of the container (its cgroup), PID 1 first."""
    sent = signal_pid1(rec, sig)
    if rec.cgroup:
        from ocibox.cgroups import reopen

        with suppress(ValueError, OSError):
            reopen(json.loads(rec.cgroup)).kill_all(sig)
    return sent


def _after_exit(store: st.Store, rec: st.ContainerRecord, guessed: int, stopped: bool = False) -> st.ContainerRecord:
    """PID 1 is gone: wait for its monitor's cleanup, or (no monitor: it was killed) do its work.
    ``stopped`` (PID 1 ended by ``stop``'s signal) and nothing but its cgroups to remove: record the
    exit status its monitor wrote and leave the rest to the monitor's cleanup (a Python start of its
    own, ~60 ms that ``stop`` need not wait for; ``start`` and ``rm`` wait for it). Not for --rm (stop
    returns when the container is gone) nor on networks (its addresses and ports are free when stop
    returns, as docker's are), and ``wait`` waits for the OOM flag that only the cleanup records."""
    cdir = store.container_dir(rec.id)
    if (stopped and rec.detached and not conf(rec).get("auto_remove") and not on_networks(rec)
            and not (cdir / "usernet.json").exists()):
        written = _wait_exit_file(store, rec)
        if written is not None:
            st.finish_container(store, rec.id, written[0], remove=False, finished_at=written[1], of_run=rec.started_at)
            return st.get_container(store, rec.id)
    if rec.detached:
        wait_cleanup(store, rec)
        rec = st.get_container(store, rec.id)
        if rec.state in ("running", "paused") and not rec.alive:
            rec = repair(store, rec, guessed)
    else:
        # A foreground container: its 'ocibox run' records the exit; wait for it (briefly).
        deadline = time.monotonic() + 10
        while rec.state in ("running", "paused") and time.monotonic() < deadline:
            time.sleep(0.01)
            try:
                rec = st.get_container(store, rec.id)
            except st.NoSuchContainer:
                break
    del cdir
    return rec


def kill(store: st.Store, rec: st.ContainerRecord, sig: int) -> None:
    """docker kill: a signal to the container's PID 1 (SIGKILL by default); refused if it does not run."""
    rec = repair(store, rec)
    if rec.state not in ("running", "paused") or not signal_pid1(rec, sig):
        raise errors.UsageError(f"cannot kill container {rec.name}: it is not running")
    if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        st.update_container(store, rec.id, stopping=sig == signal.SIGKILL or rec.stopping)


def pause(store: st.Store, rec: st.ContainerRecord) -> None:
    rec = repair(store, rec)
    if rec.state != "running" or not rec.alive:
        raise errors.UsageError(f"container {rec.name} is not running")
    _cgroup(rec).freeze(True)
    st.update_container(store, rec.id, state="paused")


def unpause(store: st.Store, rec: st.ContainerRecord) -> None:
    if rec.state != "paused":
        raise errors.UsageError(f"container {rec.name} is not paused")
    _cgroup(rec).freeze(False)
    st.update_container(store, rec.id, state="running")


def _cgroup(rec: st.ContainerRecord) -> Any:
    from ocibox.cgroups import reopen

    if not rec.cgroup:
        raise errors.UsageError(f"container {rec.name} has no cgroup of its own")
    return reopen(json.loads(rec.cgroup))


def wait(store: st.Store, rec: st.ContainerRecord) -> int:
    """docker wait: block until the container's current run ends; its exit code."""
    rec = repair(store, rec)
    if rec.state in ("running", "paused") and rec.alive:
        started = rec.started_at
        wait_pid_exit(rec, None)
        rec = _after_exit(store, rec, UNKNOWN_EXIT)
        deadline = time.monotonic() + 30
        while rec.finished_at < started and time.monotonic() < deadline:
            time.sleep(0.01)
            rec = st.get_container(store, rec.id)
    return rec.exit_code if rec.exit_code is not None else 0


def rename(store: st.Store, rec: st.ContainerRecord, new: str) -> None:
    from ocibox.run import check_name

    check_name(new)
    st.update_container(store, rec.id, name=new)


def remove(store: st.Store, rec: st.ContainerRecord, *, force: bool = False, lock_held: bool = False) -> None:
    """docker rm: refused for a running container without ``force`` (then killed first); removes its
    record, its directory (writable layer, logs), its cgroups."""
    from ocibox.cgroups import remove_leftovers

    rec = repair(store, rec)
    if rec.state in ("running", "paused") and rec.alive:
        if not force:
            raise errors.UsageError(f"you cannot remove a running container {rec.id[:12]}: stop the container "
                                    "before removing it, or force-remove it with rm -f")
        st.update_container(store, rec.id, stopping=True)
        if rec.state == "paused":
            with suppress(errors.OciboxError):
                unpause(store, rec)
        _kill_all(rec, signal.SIGKILL)
        wait_pid_exit(rec, 10.0)
    if not lock_held:
        _let_go(store, rec)
    _teardown(store, rec)
    st.delete_containers(store, [rec.id])
    cdir = store.container_dir(rec.id)
    from ocibox.linux import syscalls

    for mp in proc.mount_points_under(cdir):
        with suppress(OSError):
            syscalls.umount(mp, syscalls.MNT_DETACH)
    st.remove_tree(cdir)
    remove_leftovers(rec.id)
