"""Rootless mode's pure parts: subordinate ids and maps, the owner policy of unpacking, user-mode
network options, the config's user namespace, cgroups without root on a directory model, settings."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from ocibox import ocispec
from ocibox.cgroups import CgroupV2, Limits, NoCgroup, delegated_root, rootless_cgroup
from ocibox.digest import Digest
from ocibox.errors import CgroupError, LayerError, RootlessError, UsageError
from ocibox.image import ImageConfig, Platform
from ocibox.layers._extract import Owners
from ocibox.network import build_request
from ocibox.network._parse import parse_user_mode
from ocibox.ocispec import IdMapping
from ocibox.rootless import maps_for, parse_subids
from ocibox.rootless._ids import build, parse_map, to_host
from ocibox.run._config import build as build_config
from ocibox.run._flags import parse_run_args
from ocibox.run._process import _refuse_unsupported
from ocibox.run._spec import RunSpec
from ocibox.settings import Config

SUBUID = """# comment
alice:100000:65536
1001:300000:1000
bob:200000:65536
alice:500000:10
broken line
alice:x:5
alice:600000:0
"""


def test_parse_subids_by_name_or_uid() -> None:
    assert parse_subids(SUBUID, "alice", 1001) == [(100000, 65536), (300000, 1000), (500000, 10)]
    assert parse_subids(SUBUID, "bob", 1002) == [(200000, 65536)]
    assert parse_subids(SUBUID, "carol", 1003) == []


def test_maps_put_ranges_one_after_another() -> None:
    m = maps_for(1001, 1001, "alice", SUBUID, "alice:100000:65536\n")
    assert m.uids == (IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536), IdMapping(65537, 300000, 1000),
                      IdMapping(66537, 500000, 10))
    assert m.gids == (IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536))
    assert not m.single and m.uid_count == 66547 and m.gid_range() == "0-65536"
    assert m.host_uid(0) == 1001 and m.host_uid(1000) == 100999 and m.host_uid(65537) == 300000
    assert m.host_uid(70000) == 65534  # unmapped: the overflow id


def test_without_a_range_the_map_is_single() -> None:
    m = maps_for(1003, 1003, "carol", SUBUID, "")
    assert m.single and m.uids == (IdMapping(0, 1003, 1),) and m.uid_range() == "0"


def test_the_users_own_id_inside_its_range_is_left_out() -> None:
    assert build(100005, [(100000, 10)]) == (IdMapping(0, 100005, 1), IdMapping(1, 100000, 5), IdMapping(6, 100006, 4))


def test_parse_proc_map() -> None:
    maps = parse_map("         0       1001          1\n         1     100000      65536\n")
    assert maps == (IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536)) and to_host(maps, 33) == 100032


def _entry(name: str, uid: int, gid: int) -> SimpleNamespace:
    return SimpleNamespace(name=name, uid=uid, gid=gid)


def test_owners_in_the_maps_pass() -> None:
    e = _entry("a", 1000, 42)
    Owners(65537, 65537).check(e, "img")  # type: ignore[arg-type]
    assert (e.uid, e.gid) == (1000, 42)


def test_owner_outside_the_maps_is_named_with_the_range() -> None:
    with pytest.raises(LayerError, match=r"entry 'far': uid 70000 is outside the ids mapped for user u "
                                         r"\(container uids 0-65536\)"):
        Owners(65537, 65537, user="u").check(_entry("far", 70000, 0), "img")  # type: ignore[arg-type]
    with pytest.raises(LayerError, match="gid 4294967294"):
        Owners(65537, 65537, user="u").check(_entry("g", 0, 4294967294), "img")  # type: ignore[arg-type]


def test_single_map_names_the_file_and_the_fix() -> None:
    with pytest.raises(LayerError, match=r"'home/app' belongs to uid 1000, but user u has no subordinate ids.*"
                                         r"usermod --add-subuids.*--ignore-chown-errors"):
        Owners(1, 1, user="u", howto="usermod --add-subuids 100000-165535 u").check(  # type: ignore[arg-type]
            _entry("home/app", 1000, 1000), "img")


def test_squash_makes_outsiders_root() -> None:
    e = _entry("x", 70000, 5)
    Owners(65537, 65537, squash=True).check(e, "img")  # type: ignore[arg-type]
    assert (e.uid, e.gid) == (0, 5)
    e = _entry("y", 1000, 1000)
    Owners(1, 1, squash=True).check(e, "img")  # type: ignore[arg-type]
    assert (e.uid, e.gid) == (0, 0)


@pytest.mark.parametrize("kind,text,want", [
    ("slirp4netns", "", (False, ())),
    ("slirp4netns", "allow_host_loopback=true,mtu=1500", (True, ("--mtu=1500",))),
    ("slirp4netns", "enable_ipv6=true,port_handler=slirp4netns", (False, ("--enable-ipv6",))),
    ("pasta", "--map-gw,-4", (True, ("--map-gw", "-4"))),
])
def test_user_mode_options(kind: str, text: str, want: tuple[bool, tuple[str, ...]]) -> None:
    assert parse_user_mode(kind, text) == want


@pytest.mark.parametrize("kind,text,match", [
    ("slirp4netns", "port_handler=rootlesskit", "unknown option"),
    ("slirp4netns", "allow_host_loopback=yes", "unknown option"),
    ("pasta", "--netns=/x", "set by ocibox"),
    ("pasta", "map-gw", "not a pasta option"),
])
def test_user_mode_options_refused(kind: str, text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        parse_user_mode(kind, text)


def test_user_modes_take_ports() -> None:
    req = build_request(network=["slirp4netns:allow_host_loopback=true"], publish=["8080:80"])
    assert req.mode == "slirp4netns" and req.target == "allow_host_loopback=true" and req.ports[0].host_port == 8080
    assert build_request(network=["pasta"]).mode == "pasta"


MAPS = ((IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536)), (IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536)))


def _spec(*flags: str) -> RunSpec:
    config = ImageConfig(platform=Platform("linux", "amd64"), diff_ids=(Digest.parse("sha256:" + "0" * 64),))
    return RunSpec.from_image(config, parse_run_args([*flags, "img", "true"], {}), container_id="ab" * 32)


def test_config_with_a_new_user_namespace() -> None:
    cfg = build_config(_spec("--network", "none"), rootfs="/r", etc_dir="/e", cgroups_path="", seccomp=None,
                       id_maps=MAPS)
    assert cfg.linux.namespaces[0] == ocispec.Namespace("user")  # first: the rest are owned by it
    assert cfg.linux.uid_mappings == MAPS[0] and cfg.linux.gid_mappings == MAPS[1]
    assert cfg.linux.sysctl["net.ipv4.ping_group_range"] == "0 65536"  # only gids the namespace maps
    back = ocispec.parse(ocispec.to_json(cfg))
    assert back.linux.uid_mappings == MAPS[0]
    _refuse_unsupported(cfg)


def test_config_joining_a_user_namespace_has_no_maps() -> None:
    cfg = build_config(_spec("--network", "none"), rootfs="/r", etc_dir="/e", cgroups_path="", seccomp=None,
                       id_maps=MAPS, joined={"user": "/proc/7/ns/user", "mount": "/proc/7/ns/mnt"})
    assert cfg.linux.namespace("user") == ocispec.Namespace("user", "/proc/7/ns/user")
    assert cfg.linux.namespace("mount") == ocispec.Namespace("mount", "/proc/7/ns/mnt")
    assert cfg.linux.uid_mappings == () and cfg.linux.sysctl["net.ipv4.ping_group_range"] == "0 65536"


def test_user_namespace_and_maps_go_together() -> None:
    from ocibox._record import replace

    cfg = build_config(_spec("--network", "none"), rootfs="/r", etc_dir="/e", cgroups_path="", seccomp=None,
                       id_maps=MAPS)
    with pytest.raises(ocispec.SpecError, match=r"needs linux\.uidMappings"):
        _refuse_unsupported(replace(cfg, linux=replace(cfg.linux, uid_mappings=())))
    no_user = tuple(n for n in cfg.linux.namespaces if n.type != "user")
    with pytest.raises(ocispec.SpecError, match="no user namespace"):
        _refuse_unsupported(replace(cfg, linux=replace(cfg.linux, namespaces=no_user)))


# ----------------------------------------------------------------------------- cgroups without root
def _v2(tmp: Path) -> Path:
    (tmp / "cgroup.controllers").write_text("cpu memory pids\n")
    return tmp


def test_v1_limits_need_root(tmp_path: Path) -> None:
    with pytest.raises(RootlessError, match=r"cgroup v1.*delegat.*drop the limits"):
        rootless_cgroup("c", Limits(memory=64 << 20), root=tmp_path)
    cg = rootless_cgroup("c", Limits(), root=tmp_path)
    assert isinstance(cg, NoCgroup) and cg.path == "" and cg.container_mounts() == []
    cg.create()
    cg.join(1)
    assert cg.state() == {"version": 0, "pid": 1} and cg.destroy() == []
    with pytest.raises(CgroupError, match="needs the container's own cgroup"):
        cg.freeze(True)


def test_v2_delegated_subtree(tmp_path: Path) -> None:
    root = _v2(tmp_path)
    session = root / "user.slice/deleg/session"
    session.mkdir(parents=True)
    for d in (root / "user.slice/deleg", session):
        (d / "cgroup.procs").write_text("")
    os.chmod(root / "user.slice", 0o755)
    proc = "0::/user.slice/deleg/session\n"
    # every directory here is the test's own: user.slice too would count; make it another's
    os.chown(root / "user.slice", os.geteuid() + 1, -1)
    try:
        assert delegated_root(root, proc) == root / "user.slice/deleg"
        cg = rootless_cgroup("ocibox-x", Limits(memory=1 << 26), root=root, proc_cgroup=proc)
        assert isinstance(cg, CgroupV2) and cg.dir == root / "user.slice/deleg/ocibox-x"
        assert cg.rules is None  # no device rules without root
    finally:
        os.chown(root / "user.slice", os.geteuid(), -1)


def test_v2_without_delegation(tmp_path: Path) -> None:
    root = _v2(tmp_path)
    (root / "system.slice").mkdir()
    os.chown(root / "system.slice", os.geteuid() + 1, -1)
    proc = "0::/system.slice\n"
    assert delegated_root(root, proc) is None
    with pytest.raises(RootlessError, match="no cgroup v2 subtree delegated to you"):
        rootless_cgroup("c", Limits(pids=10), root=root, proc_cgroup=proc)
    assert isinstance(rootless_cgroup("c", Limits(), root=root, proc_cgroup=proc), NoCgroup)


# ----------------------------------------------------------------------------- settings
def test_ignore_chown_errors_in_the_config() -> None:
    assert Config.from_dict({"storage": {"ignore_chown_errors": True}}).ignore_chown_errors
    assert Config.from_dict({"storage": {"ignore_chown_errors": "true"}}).ignore_chown_errors  # podman's spelling
    assert not Config.from_dict({}).ignore_chown_errors
    from ocibox.errors import ConfigError

    with pytest.raises(ConfigError, match="ignore_chown_errors"):
        Config.from_dict({"storage": {"ignore_chown_errors": 1}})
