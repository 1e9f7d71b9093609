"""The runtime spec's ``linux.resources`` and the cgroup manager's inputs (Limits and device rules), both
ways: ``ocibox run`` writes a config.json from its flags; any config.json becomes limits to apply."""

from __future__ import annotations

from ocibox.cgroups._base import Limits
from ocibox.cgroups._devices import ANY, Device
from ocibox.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def resources_of(limits: Limits, rules: tuple[Device, ...] | None) -> dict[str, Any]:
    """config.json's ``linux.resources`` for ``limits`` and the device allow list (None: every device
    allowed, as --privileged gives)."""
    out: dict[str, Any] = {}
    if rules is None:
        out["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        out["devices"] = [{"allow": False, "access": "rwm"}] + [_rule_json(d) for d in rules]
    memory: dict[str, int] = {}
    if limits.memory:
        memory["limit"] = limits.memory
    if limits.memory_swap:
        memory["swap"] = limits.memory_swap
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if limits.cpu_shares:
        cpu["shares"] = limits.cpu_shares
    if limits.cpu_quota:
        cpu["quota"], cpu["period"] = limits.cpu_quota, limits.cpu_period
    if limits.cpuset:
        cpu["cpus"] = limits.cpuset
    if cpu:
        out["cpu"] = cpu
    if limits.pids:
        out["pids"] = {"limit": limits.pids}
    return out


def _rule_json(d: Device) -> dict[str, Any]:
    out: dict[str, Any] = {"allow": d.allow, "type": d.type}
    if d.major != ANY:
        out["major"] = d.major
    if d.minor != ANY:
        out["minor"] = d.minor
    out["access"] = d.access
    return out


def _int(obj: dict[str, Any], key: str, where: str) -> int:
    v = obj.get(key, 0)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError(f"config.json: {where}.{key} must be an integer")
    return v


def limits_from_resources(res: dict[str, Any]) -> tuple[Limits, tuple[Device, ...] | None]:
    """The limits and device rules of config.json's ``linux.resources`` (rules None: no device
    restriction). A field ocibox cannot apply is refused by name, never dropped."""
    known = {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "unified", "network", "rdma"}
    for key in res:
        if key not in known:
            raise UsageError(f"config.json: linux.resources.{key} is not a resource ocibox knows")
    mem = res.get("memory") or {}
    cpu = res.get("cpu") or {}
    pids = res.get("pids") or {}
    for name, obj in (("memory", mem), ("cpu", cpu), ("pids", pids)):
        if not isinstance(obj, dict):
            raise UsageError(f"config.json: linux.resources.{name} must be an object")
    extra: list[tuple[str, str]] = []
    for key, what in (("reservation", "memory.reservation"), ("swappiness", "memory.swappiness")):
        if mem.get(key) not in (None, -1) and not (key == "reservation" and mem.get(key) == 0):
            extra.append((what, str(_int(mem, key, "linux.resources.memory"))))
    if mem.get("disableOOMKiller"):
        extra.append(("memory.disable_oom_killer", "1"))
    # memory.kernel and kernelTCP: deprecated by the spec and gone from the kernel (5.16+): ignored, as runc
    for key, what in (("realtimeRuntime", "cpu.rt_runtime"), ("realtimePeriod", "cpu.rt_period"),
                      ("idle", "cpu.idle"), ("burst", "cpu.burst")):
        if cpu.get(key) not in (None, 0):
            extra.append((what, str(_int(cpu, key, "linux.resources.cpu"))))
    if cpu.get("mems"):
        if not isinstance(cpu["mems"], str):
            raise UsageError("config.json: linux.resources.cpu.mems must be a string like \"0\"")
        extra.append(("cpuset.mems", cpu["mems"]))
    extra += _block_io(res.get("blockIO") or {})
    for i, h in enumerate(res.get("hugepageLimits") or []):
        if not isinstance(h, dict) or not isinstance(h.get("pageSize"), str):
            raise UsageError(f"config.json: linux.resources.hugepageLimits[{i}] needs pageSize (\"2MB\") and limit")
        extra.append((f"hugetlb.{h['pageSize']}", str(_int(h, "limit", f"linux.resources.hugepageLimits[{i}]"))))
    unified = res.get("unified") or {}
    if not isinstance(unified, dict) or not all(isinstance(v, str) for v in unified.values()):
        raise UsageError("config.json: linux.resources.unified must map cgroup v2 file names to strings")
    for name, value in unified.items():
        if "/" in name or name.startswith("."):
            raise UsageError(f"config.json: linux.resources.unified: {name!r} is not a cgroup file name")
        extra.append((f"unified:{name}", value))
    for key in ("rdma", "network"):
        if res.get(key):
            raise UsageError(f"config.json: linux.resources.{key} is not supported by ocibox (no such controller "
                             "is managed here); remove it")
    cpus = cpu.get("cpus") or ""
    if not isinstance(cpus, str):
        raise UsageError("config.json: linux.resources.cpu.cpus must be a string like \"0-1\"")
    limits = Limits(
        memory=max(_int(mem, "limit", "linux.resources.memory"), 0),
        # no swap given: runc leaves memory+swap unlimited (docker's "twice the memory" is ocibox run's)
        memory_swap=_int(mem, "swap", "linux.resources.memory") if mem.get("swap") is not None
        else (-1 if mem.get("limit") else 0),
        cpu_quota=max(_int(cpu, "quota", "linux.resources.cpu"), 0),
        cpu_period=_int(cpu, "period", "linux.resources.cpu") or 100_000,
        cpu_shares=_int(cpu, "shares", "linux.resources.cpu"),
        pids=_int(pids, "limit", "linux.resources.pids"),
        cpuset=cpus,
        extra=tuple(extra),
    )
    return limits, _device_rules(res.get("devices") or [])


def _block_io(b: object) -> list[tuple[str, str]]:
    """linux.resources.blockIO as (what, value) pairs: weight, leafWeight, per-device weights and the four
    throttles ("MAJ:MIN VALUE")."""
    if not isinstance(b, dict):
        raise UsageError("config.json: linux.resources.blockIO must be an object")
    out: list[tuple[str, str]] = []
    for key, what in (("weight", "blkio.weight"), ("leafWeight", "blkio.leaf_weight")):
        if b.get(key):
            out.append((what, str(_int(b, key, "linux.resources.blockIO"))))
    for i, d in enumerate(b.get("weightDevice") or []):
        where = f"linux.resources.blockIO.weightDevice[{i}]"
        dev = f"{_int(d, 'major', where)}:{_int(d, 'minor', where)}"
        if d.get("weight"):
            out.append(("blkio.weight_device", f"{dev} {_int(d, 'weight', where)}"))
    for key, what in (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
                      ("throttleReadIOPSDevice", "read_iops_device"), ("throttleWriteIOPSDevice", "write_iops_device")):
        for i, d in enumerate(b.get(key) or []):
            where = f"linux.resources.blockIO.{key}[{i}]"
            out.append((f"blkio.throttle.{what}",
                        f"{_int(d, 'major', where)}:{_int(d, 'minor', where)} {_int(d, 'rate', where)}"))
    return out


def _device_rules(items: object) -> tuple[Device, ...] | None:
    if not isinstance(items, list):
        raise UsageError("config.json: linux.resources.devices must be a list")
    rules: list[Device] = []
    for i, r in enumerate(items):
        where = f"linux.resources.devices[{i}]"
        if not isinstance(r, dict):
            raise UsageError(f"config.json: {where} must be an object")
        kind = r.get("type") or "a"
        access = r.get("access") or "rwm"
        if kind not in ("a", "c", "b") or not isinstance(access, str) or not access or set(access) - set("rwm"):
            raise UsageError(f"config.json: {where}: type must be a, c or b and access a combination of rwm")
        major, minor = r.get("major"), r.get("minor")
        rules.append(Device(kind, ANY if major in (None, -1) else int(major), ANY if minor in (None, -1) else int(minor),
                            access, bool(r.get("allow", False))))
    if not rules:
        return None  # nothing said: the runtime adds no restriction of its own
    allow_all, deny_all = Device("a", ANY, ANY, "rwm", True), Device("a", ANY, ANY, "rwm", False)
    # The manager always starts from "deny everything": a list that starts elsewhere starts from
    # "allow everything" instead (a v1 cgroup's default).
    rules = rules[1:] if rules[0] == deny_all else [allow_all, *rules]
    while len(rules) > 1 and rules[0] == allow_all and rules[1] == allow_all:
        rules.pop(0)
    return None if rules == [allow_all] else tuple(rules)
