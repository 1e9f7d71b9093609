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
    for key in ("reservation", "swappiness", "disableOOMKiller"):  # kernel and kernelTCP: obsolete, ignored
        if mem.get(key) not in (None, 0, False):
            raise UsageError(f"config.json: linux.resources.memory.{key} is not supported by ocibox yet")
    for key in ("realtimeRuntime", "realtimePeriod", "mems", "idle", "burst"):
        if cpu.get(key) not in (None, 0, ""):
            raise UsageError(f"config.json: linux.resources.cpu.{key} is not supported by ocibox yet")
    for key in ("blockIO", "hugepageLimits", "unified", "rdma"):
        if res.get(key):
            raise UsageError(f"config.json: linux.resources.{key} is not supported by ocibox yet")
    cpus = cpu.get("cpus") or ""
    if not isinstance(cpus, str):
        raise UsageError("config.json: linux.resources.cpu.cpus must be a string like \"0-1\"")
    limits = Limits(
        memory=max(_int(mem, "limit", "linux.resources.memory"), 0),
        memory_swap=_int(mem, "swap", "linux.resources.memory"),
        cpu_quota=max(_int(cpu, "quota", "linux.resources.cpu"), 0),
        cpu_period=_int(cpu, "period", "linux.resources.cpu") or 100_000,
        cpu_shares=_int(cpu, "shares", "linux.resources.cpu"),
        pids=_int(pids, "limit", "linux.resources.pids"),
        cpuset=cpus,
    )
    return limits, _device_rules(res.get("devices") or [])


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
