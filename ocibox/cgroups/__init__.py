"""Cgroups: one manager per version behind one interface (``Cgroup``), detected once; a hybrid host
counts as v1. The devices controller is one of its controllers (v1: the ``devices`` hierarchy; v2: an
eBPF program attached to the cgroup), and the teardown of leftover container cgroups lives here too.

Public surface (loaded lazily)::

    Limits                               the limits a container asks for (memory, cpu, pids, cpuset)
    Device, ANY                          one device rule ("c 1:3 rwm")
    Cgroup                               the interface: create, apply, join, container_mounts, oom_kills,
                                         procs, destroy, devices_fallback
    open_cgroup(name, limits, *, devices=None, parent="", echo=None, root=...) -> Cgroup
    rootless_cgroup(...) / NoCgroup / delegated_root()   without root: a delegated v2 cgroup, or none
    reopen(cgroup.state()) -> Cgroup     the manager of an existing cgroup, in another process
    detect(root) -> 1 | 2                2 on a pure v2 host
    own_v1_dir(controller)               this process's cgroup directory in a v1 hierarchy
    cpu_weight(shares)                   cpu.shares -> cpu.weight (runc's conversion)
    MigrationWarmup                      pays the first migration's RCU grace period early
    warm_for(argv) / warmup()            start it from the entry point for a verb that joins; take it
    resources_of(limits, rules) / limits_from_resources(res)   config.json's linux.resources, both ways
    container_cgroups(name) / remove_leftovers(name)   cgroups named after a container, in every hierarchy
    bpf_device_program / attach_v2 / write_v1 / read_v1 / V2_FALLBACK   the devices controller
"""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)
if TYPE_CHECKING:
    from ocibox.cgroups._base import CGROUP_ROOT, Cgroup, Limits, cpu_weight, detect
    from ocibox.cgroups._devices import (
        ANY,
        V2_FALLBACK,
        Device,
        attach_v2,
        bpf_device_program,
        read_v1,
        write_v1,
    )
    from ocibox.cgroups._leftovers import container_cgroups, remove_leftovers
    from ocibox.cgroups._manager import (
        CgroupV1,
        CgroupV2,
        NoCgroup,
        delegated_root,
        open_cgroup,
        own_v1_dir,
        reopen,
        rootless_cgroup,
    )
    from ocibox.cgroups._resources import limits_from_resources, resources_of
    from ocibox.cgroups._warmup import MigrationWarmup, warm_for, warmup

_TABLE = {
    **dict.fromkeys(("CGROUP_ROOT", "Cgroup", "Limits", "cpu_weight", "detect"), "_base"),
    **dict.fromkeys(("ANY", "V2_FALLBACK", "Device", "attach_v2", "bpf_device_program", "read_v1", "write_v1"),
                    "_devices"),
    **dict.fromkeys(("container_cgroups", "remove_leftovers"), "_leftovers"),
    **dict.fromkeys(("CgroupV1", "CgroupV2", "NoCgroup", "delegated_root", "open_cgroup", "own_v1_dir", "reopen",
                     "rootless_cgroup"), "_manager"),
    "MigrationWarmup": "_warmup",
    "warm_for": "_warmup",
    "warmup": "_warmup",
    "limits_from_resources": "_resources",
    "resources_of": "_resources",
}

__getattr__ = lazy_getattr(__name__, _TABLE)

__all__ = [
    "ANY",
    "CGROUP_ROOT",
    "V2_FALLBACK",
    "Cgroup",
    "CgroupV1",
    "CgroupV2",
    "Device",
    "Limits",
    "MigrationWarmup",
    "NoCgroup",
    "attach_v2",
    "bpf_device_program",
    "container_cgroups",
    "cpu_weight",
    "delegated_root",
    "detect",
    "limits_from_resources",
    "open_cgroup",
    "own_v1_dir",
    "read_v1",
    "remove_leftovers",
    "reopen",
    "resources_of",
    "rootless_cgroup",
    "warm_for",
    "warmup",
    "write_v1",
]
