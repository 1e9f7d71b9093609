"""The store glue of ``ocibox run``: find (or pull) the image, record the container, run it, clean up.

On the warm path (image present) nothing heavy is imported: no httpx, tqdm, tarfile or puller; the
puller is imported only when the image has to be pulled. ``-d`` hands the container to a monitor
(``_detach``) and returns once its command runs.
"""

from __future__ import annotations

import os
import sys

from ocibox import store as st
from ocibox.cgroups import MigrationWarmup, open_cgroup
from ocibox.errors import ImageNotFound, OciboxError
from ocibox.run import _hardening
from ocibox.run._flags import parse_run_args
from ocibox.run._process import run_container
from ocibox.run._spec import RunFlags, RunSpec

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)

if TYPE_CHECKING:
    from pathlib import Path

    from ocibox.layers import FuseRootfs
    from ocibox.ocispec import IdMapping
    from ocibox.settings import Settings


def _image(settings: Settings, store: st.Store, flags: RunFlags,
           warmup: MigrationWarmup | None = None) -> st.ImageRecord:
    if flags.pull != "always":
        try:
            record = st.find_image(store, flags.image)
        except ImageNotFound:
            if flags.pull == "never":
                raise ImageNotFound(f"no such image: {flags.image}; --pull never forbids pulling it "
                                    f"(run 'ocibox pull {flags.image}')") from None
        else:
            if not flags.platform:
                return record
            from ocibox.image import Platform

            if str(Platform.parse(flags.platform)) == record.platform:
                return record
    if warmup is not None:
        warmup.stop()  # no thread beside a pull: it forks its unpackers
    import contextlib

    from ocibox import puller
    from ocibox.image import Platform
    from ocibox.reference import Reference

    ref = Reference.parse(flags.image)
    sys.stderr.write(f"Unable to find image '{flags.image}' locally\n" if flags.pull == "missing" else "")
    # docker run: the pull's progress goes to stderr; stdout is the container's alone.
    platform = Platform.parse(flags.platform) if flags.platform else None
    with contextlib.redirect_stdout(sys.stderr):
        if os.geteuid() != 0:
            # Without root the layers are unpacked as root of a user namespace with the user's ids (as
            # 'ocibox pull' does), here in a child: this process stays outside to make the container.
            from ocibox import rootless

            rootless.warn_single(rootless.current(), settings.root)
            rootless.in_userns_call(_pull, settings, ref, platform, error=OciboxError)
        else:
            puller.pull(settings, ref, platform=platform)
    return st.find_image(store, flags.image)


def _pull(settings: Settings, ref: object, platform: object) -> None:
    from ocibox import puller

    puller.pull(settings, ref, platform=platform)  # type: ignore[arg-type]


def main(settings: Settings, argv: list[str], warmup: MigrationWarmup | None = None, prog: str = "ocibox run") -> int:
    flags = parse_run_args(argv, prog=prog)
    store = st.Store(settings.root)
    record = _image(settings, store, flags, warmup)
    config = record.config(store)
    cid = st.new_container_id()
    spec = RunSpec.from_image(config, flags, container_id=cid)
    for warning in spec.warnings:
        sys.stderr.write(f"ocibox: warning: {warning}\n")

    def echo(line: str) -> None:
        sys.stderr.write(f"ocibox: {line}\n")

    if flags.detach:
        return _detached(settings, store, flags, spec, record, cid, config.stop_signal, config.exposed_ports)

    from ocibox.layers import prepare_rootfs

    id_maps = _id_maps(settings)
    debug = echo if settings.debug else None
    cgroup = open_cgroup(f"ocibox-{cid}", spec.limits, parent=flags.cgroup_parent, echo=debug,
                         devices=_hardening.device_rules(spec.hardening, spec.tty))
    # Between finding the image and recording the container, a prune or rmi could remove the
    # image: lease it, look it up again under the lease, then record the container (whose live
    # row protects the image from then on).
    with store.lease("run", [record.id, *(x.chain_id for x in record.layers)]):
        record = st.load_image(store, record.id)
        st.add_container(store, cid, flags.name or None, record.id, list(spec.argv))
    cdir = store.container_dir(cid)
    net = None
    if spec.net is not None:  # the network room, imported only for containers on networks
        from ocibox.run import _net

        try:
            net = _net.plan(settings, store, spec.net, cid, flags.name, spec.hostname)
        except BaseException:
            st.finish_container(store, cid, None, remove=True)
            raise

    def started(pid: int) -> None:  # PID 1 is in its cgroups (it sets itself up meanwhile)
        from ocibox import _json as json

        st.touch_image(store, record.id)  # here, not before the fork: beside PID 1's setup, not before it
        st.set_container_pid(store, cid, pid, cgroup=json.dumps(cgroup.state()))
        if debug is not None:
            for note in cgroup.notes:
                debug(note)

    upper, work, merged = cdir / "upper", cdir / "work", cdir / "merged"
    status: int | None = None
    fuse = None
    try:
        # seccomp program built while libseccomp is reachable, --ulimit checked
        prepared = _hardening.prepare(spec.hardening, spec.caps, cache_dir=str(settings.root / "seccomp"),
                                      echo=debug)
        for d in (upper, work, merged):
            d.mkdir(parents=True)
        if id_maps is not None:
            fuse = _fuse_rootfs(store, record, merged, upper, work)
        if warmup is not None:
            # Stopped before the fork: a fork waits for a cgroup migration in progress (both take the
            # kernel's cgroup_threadgroup_rwsem), and the join comes within the grace period anyway.
            warmup.stop()
        status = run_container(
            spec,
            merged,
            cdir,
            mount_rootfs=None if fuse is not None else
            prepare_rootfs(store, record, merged, upper=upper, work=work, warn=echo),
            cgroup=cgroup,
            on_start=started if fuse is None else fuse.then(started),
            prepared=prepared,
            netns=net.netns if net is not None else "",
            etc=net.etc if net is not None else None,
            late_etc=net.late_etc if net is not None else None,
            on_namespaces=net.on_namespaces if net is not None else None,
            id_maps=id_maps,
            joined=fuse.joined if fuse is not None else None,
        )
        return status
    finally:
        if fuse is not None:
            fuse.close()
        if net is not None:
            net.finish(settings, cid)  # CNI DEL in the background: the exit status is not kept waiting
        st.remove_tree(cdir)
        st.finish_container(store, cid, status, remove=flags.rm)


def _fuse_rootfs(store: st.Store, record: st.ImageRecord, merged: Path, upper: Path, work: Path) -> FuseRootfs | None:
    """Without root where the kernel refuses overlayfs in a user namespace: the rootfs by fuse-overlayfs,
    held outside the container (ocibox.layers.FuseRootfs, started); None where the kernel's works."""
    from ocibox.layers import FuseRootfs, rootless_overlay

    if rootless_overlay(store) != "fuse":
        return None
    fuse = FuseRootfs(store, record, merged, upper, work)
    fuse.start()
    return fuse


def _id_maps(settings: Settings) -> tuple[tuple[IdMapping, ...], tuple[IdMapping, ...]] | None:
    """Without root: the container's user namespace maps (container root is the user, 1..N the user's
    subordinate ids; see ocibox.rootless). None as the host's root."""
    from ocibox import rootless

    if not rootless.is_rootless():
        return None

    maps = rootless.namespace_maps()
    rootless.warn_single(rootless.current(), settings.root)
    return maps.uids, maps.gids


def _detached(settings: Settings, store: st.Store, flags: RunFlags, spec: RunSpec, record: st.ImageRecord, cid: str,
              image_stop_signal: str, exposed_ports: tuple[str, ...]) -> int:
    """run -d: record the container (detached: it stays until rm), write its config.json, start it under a
    monitor, print its id. A command that cannot be executed fails here with 126/127, as docker's run -d
    does; the container then stays as created (removed with --rm)."""
    from ocibox import _json as json
    from ocibox import ocispec
    from ocibox.cgroups import resources_of
    from ocibox.run._config import build
    from ocibox.run._detach import start_detached

    settings_json = {
        "restart": {"name": flags.restart[0], "max": flags.restart[1]},
        "stop_signal": flags.stop_signal or image_stop_signal or "SIGTERM",
        "stop_timeout": 10 if flags.stop_timeout is None else flags.stop_timeout,
        "log": {"max_size": flags.log_max_size, "max_file": flags.log_max_file},
        "auto_remove": flags.rm, "tty": flags.tty, "interactive": flags.interactive,
        "cgroup_parent": flags.cgroup_parent, "network": spec.network, "hostname": spec.hostname,
        "net": flags.net.to_json(), "exposed": list(exposed_ports),
    }
    cdir = store.container_dir(cid)
    prepared = _hardening.prepare(spec.hardening, spec.caps, cache_dir=str(settings.root / "seccomp"))
    if spec.net is not None:  # networks, plugins, host ports: refused before anything is recorded
        from ocibox import network

        network.check(settings, spec.net, cid, flags.name or cid[:12])
    try:
        with store.lease("run", [record.id, *(x.chain_id for x in record.layers)]):
            record = st.load_image(store, record.id)
            rec = st.add_container(store, cid, flags.name or None, record.id, list(spec.argv),
                                   image_ref=flags.image, detached=True, labels=dict(flags.labels),
                                   settings=settings_json)
    except BaseException:
        if spec.net is not None:  # the name was taken...: the host ports check() reserved go again
            network.detach(settings, cid)
        raise
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        id_maps = _id_maps(settings)
        if id_maps is not None:  # without root: refused now (no cgroup v1, no delegation) rather than at start
            open_cgroup(f"ocibox-{cid}", spec.limits, parent=flags.cgroup_parent)
        config = build(spec, rootfs=str(cdir / "merged"), etc_dir=str(cdir / "etc"), cgroups_path=f"ocibox-{cid}",
                       seccomp=prepared.profile, nodes=prepared.nodes,
                       resources=resources_of(spec.limits, _hardening.device_rules(spec.hardening, spec.tty)),
                       id_maps=id_maps)
        with open(cdir / "config.json", "w") as f:
            f.write(json.dumps(ocispec.to_json(config)))  # dumps: the C encoder (dump is pure Python)
        st.touch_image(store, record.id)
        start_detached(settings, store, rec, made=(config, record, prepared.seccomp))
    except BaseException as e:
        code = e.exit_code if isinstance(e, OciboxError) else 125
        from ocibox.errors import NetworkError

        if flags.rm or isinstance(e, NetworkError):  # a network that fails is refused input: nothing stays
            st.delete_containers(store, [cid])
            st.remove_tree(cdir)
        else:
            st.update_container(store, cid, exit_code=code)
        raise
    sys.stdout.write(cid + "\n")
    return 0
