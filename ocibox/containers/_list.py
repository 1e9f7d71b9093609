"""What ``ps``, ``inspect``, ``top`` and ``stats`` show of containers: docker's fields, as data (the CLI
renders them)."""

from __future__ import annotations

import time

from ocibox import _json as json
from ocibox import errors
from ocibox import store as st
from ocibox._contextlib import suppress
from ocibox.containers._lifecycle import conf, network_view, repair_all
from ocibox.units import human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _iso(t: float) -> str:
    if not t:
        return "0001-01-01T00:00:00Z"
    frac = f"{t % 1:.9f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + frac + "Z"


def status_text(rec: st.ContainerRecord, now: float | None = None) -> str:
    """docker's STATUS column: "Up 3 minutes", "Up 2 seconds (Paused)", "Exited (0) 5 seconds ago",
    "Created"."""
    now = time.time() if now is None else now
    if rec.state in ("running", "paused") and rec.alive:
        up = "Up " + human_duration(now - rec.started_at)
        return up + " (Paused)" if rec.state == "paused" else up
    if rec.state == "created" or (rec.started_at == 0 and rec.exit_code is None):
        return "Created"
    code = rec.exit_code if rec.exit_code is not None else 0
    return f"Exited ({code}) {human_duration(now - (rec.finished_at or rec.created))} ago"


def state_word(rec: st.ContainerRecord) -> str:
    if rec.state in ("running", "paused") and not rec.alive:
        return "exited"
    return rec.state


def _command(rec: st.ContainerRecord) -> str:
    return " ".join(rec.argv)


def ports_text(att: Any) -> str:
    """docker ps's PORTS: ``127.0.0.1:8080->80/tcp, 0.0.0.0:5353->53/udp``."""
    return ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.protocol}"
                     for p in sorted(att.ports)) if att is not None else ""


def _network_names(rec: st.ContainerRecord, att: Any) -> str:
    if att is not None and att.endpoints:
        return ",".join(e.network for e in att.endpoints)
    net = conf(rec).get("net")
    mode = (net.get("network") or ["bridge"])[0] if isinstance(net, dict) and net else str(conf(rec).get("network"))
    return {"bridge": "ocibox"}.get(mode, mode)


def row(rec: st.ContainerRecord, now: float | None = None, store: st.Store | None = None,
        recorded: set[str] | None = None) -> dict[str, Any]:
    """One container as ``ps --format json`` prints it (docker's keys); ``store`` for its networks
    (``recorded``: the ids the network room keeps records of, when known)."""
    now = time.time() if now is None else now
    att = network_view(store, rec, recorded) if store is not None else None
    return {
        "ID": rec.id,
        "Image": rec.image_ref or rec.image_id.short,
        "ImageID": str(rec.image_id),
        "Command": _command(rec),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(rec.created)),
        "RunningFor": human_duration(now - rec.created) + " ago",
        "Status": status_text(rec, now),
        "State": state_word(rec),
        "Ports": ports_text(att),
        "Names": rec.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(rec.label_map.items())),
        "Mounts": "",
        "Networks": _network_names(rec, att),
        "Size": "",
        "Created": rec.created,
        "ExitCode": rec.exit_code,
    }


def _matches(rec: st.ContainerRecord, filters: dict[str, list[str]], store: st.Store) -> bool:
    for key, values in filters.items():
        ok = False
        for v in values:
            if key == "status":
                ok = ok or state_word(rec) == v
            elif key == "name":
                ok = ok or v.lstrip("/") in rec.name
            elif key == "id":
                ok = ok or rec.id.startswith(v)
            elif key == "label":
                k, eq, val = v.partition("=")
                labels = rec.label_map
                ok = ok or (k in labels and (not eq or labels[k] == val))
            elif key == "ancestor":
                ok = ok or _ancestor(rec, v, store)
            elif key == "exited":
                ok = ok or (state_word(rec) == "exited" and str(rec.exit_code) == v)
        if not ok:
            return False
    return True


def _ancestor(rec: st.ContainerRecord, text: str, store: st.Store) -> bool:
    if rec.image_ref == text:
        return True
    try:
        return st.find_image(store, text).id == rec.image_id
    except errors.OciboxError:
        return False


FILTER_KEYS = ("status", "name", "id", "label", "ancestor", "exited")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in items:
        key, eq, value = f.partition("=")
        if not eq or key not in FILTER_KEYS:
            raise errors.UsageError(f"invalid filter {f!r}: use one of {', '.join(k + '=' for k in FILTER_KEYS)}")
        if key == "status" and value not in STATUSES:
            raise errors.UsageError(f"invalid filter 'status={value}': one of {', '.join(STATUSES)}")
        out.setdefault(key, []).append(value)
    return out


def list_containers(store: st.Store, *, all_: bool = False, last: int = 0, filters: dict[str, list[str]] | None = None,
                    ) -> list[dict[str, Any]]:
    """docker ps: running containers (``all_``: every one), newest first, filtered; ``last`` N newest."""
    recs, recorded = repair_all(store)
    recs.sort(key=lambda r: -r.created)
    if not all_ and not last and not (filters and "status" in filters):
        recs = [r for r in recs if state_word(r) in ("running", "paused")]
    if filters:
        recs = [r for r in recs if _matches(r, filters, store)]
    if last:
        recs = recs[:last]
    now = time.time()
    return [row(r, now, store, recorded) for r in recs]


def inspect(store: st.Store, rec: st.ContainerRecord) -> dict[str, Any]:
    """docker inspect of a container: its JSON shape (the fields ocibox has)."""
    c = conf(rec)
    cdir = store.container_dir(rec.id)
    config: dict[str, Any] = {}
    try:
        with open(cdir / "config.json") as f:
            config = json.loads(f.read())
    except (OSError, ValueError):
        pass
    proc_: dict[str, Any] = config.get("process") or {}
    state = state_word(rec)
    running = state in ("running", "paused")
    policy = c["restart"] if isinstance(c["restart"], dict) else {}
    log = c["log"] if isinstance(c["log"], dict) else {}
    mounts = [{"Type": "bind", "Source": m.get("source", ""), "Destination": m.get("destination", ""),
               "Mode": "", "RW": "ro" not in (m.get("options") or []), "Propagation": "rprivate"}
              for m in config.get("mounts", []) if m.get("type") == "bind" and not m.get("destination", "").startswith("/etc/")]
    resources = (config.get("linux") or {}).get("resources") or {}
    argv = rec.argv
    return {
        "Id": rec.id,
        "Created": _iso(rec.created),
        "Path": argv[0] if argv else "",
        "Args": argv[1:],
        "State": {
            "Status": state, "Running": running, "Paused": state == "paused", "Restarting": False,
            "OOMKilled": rec.oom_killed, "Dead": False, "Pid": rec.pid if running else 0,
            "ExitCode": rec.exit_code if rec.exit_code is not None else 0, "Error": "",
            "StartedAt": _iso(rec.started_at), "FinishedAt": _iso(rec.finished_at if not running else 0),
        },
        "Image": str(rec.image_id),
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": str(cdir / "ctr.log") if rec.detached else "",
        "Name": "/" + rec.name,
        "RestartCount": rec.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": {
            "RestartPolicy": {"Name": policy.get("name", "no"), "MaximumRetryCount": policy.get("max", 0)},
            "AutoRemove": bool(c.get("auto_remove")),
            "LogConfig": {"Type": "k8s-file", "Config": {k: str(v) for k, v in
                                                          (("max-size", log.get("max_size", 0)),
                                                           ("max-file", log.get("max_file", 1))) if v}},
            "NetworkMode": _network_mode(c),
            "PortBindings": _port_bindings(c),
            "CgroupParent": c.get("cgroup_parent", ""),
            "Memory": (resources.get("memory") or {}).get("limit", 0),
            "MemorySwap": (resources.get("memory") or {}).get("swap", 0),
            "NanoCpus": 0,
            "CpuShares": (resources.get("cpu") or {}).get("shares", 0),
            "CpuQuota": (resources.get("cpu") or {}).get("quota", 0),
            "CpuPeriod": (resources.get("cpu") or {}).get("period", 0),
            "CpusetCpus": (resources.get("cpu") or {}).get("cpus", ""),
            "PidsLimit": (resources.get("pids") or {}).get("limit", 0),
            "ReadonlyRootfs": bool((config.get("root") or {}).get("readonly")),
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": config.get("hostname", ""),
            "User": (config.get("annotations") or {}).get("io.ocibox.user", ""),
            "Tty": bool(proc_.get("terminal")),
            "OpenStdin": bool(c.get("interactive")),
            "Env": proc_.get("env", []),
            "Cmd": argv,
            "Image": rec.image_ref,
            "WorkingDir": proc_.get("cwd", "/"),
            "Labels": rec.label_map,
            "StopSignal": c.get("stop_signal", "SIGTERM"),
            "StopTimeout": c.get("stop_timeout", 10),
        },
        "NetworkSettings": network_settings(network_view(store, rec)),
    }


def _network_mode(c: dict[str, Any]) -> str:
    net = c.get("net")
    if isinstance(net, dict) and net.get("network"):
        return str(net["network"][0])
    mode = str(c.get("network", "bridge"))
    return "bridge" if mode == "private" else mode


def _port_bindings(c: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """HostConfig.PortBindings: the -p flags as given (docker's keys; "" for a random host port)."""
    net = c.get("net")
    if not isinstance(net, dict) or not net.get("publish"):
        return {}
    from ocibox import network

    out: dict[str, list[dict[str, str]]] = {}
    for text in net["publish"]:
        with suppress(errors.OciboxError):
            for p in network.parse_publish(text):
                port = str(p.host_port or "") + (f"-{p.host_port_end}" if p.host_port_end else "")
                out.setdefault(f"{p.container_port}/{p.protocol}", []).append({"HostIp": p.host_ip, "HostPort": port})
    return out


def network_settings(att: Any) -> dict[str, Any]:
    """docker inspect's NetworkSettings of a running container on networks (empty otherwise)."""
    if att is None:
        return {"Bridge": "", "SandboxKey": "", "Ports": {}, "IPAddress": "", "IPPrefixLen": 0, "Gateway": "",
                "MacAddress": "", "Networks": {}}
    ports: dict[str, list[dict[str, str]]] = {}
    for p in sorted(att.ports):
        ports.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    networks = {e.network: {"IPAddress": e.ip, "IPPrefixLen": _prefix(e.address), "Gateway": e.gateway,
                            "MacAddress": e.mac, "NetworkID": e.network, "EndpointID": f"{att.container_id}-{e.ifname}",
                            "Aliases": None, "DNSNames": None} for e in att.endpoints}
    first = att.endpoints[0] if att.endpoints else None
    return {"Bridge": first.bridge if first else "", "SandboxKey": att.netns, "Ports": ports,
            "IPAddress": att.ip, "IPPrefixLen": _prefix(first.address) if first else 0, "Gateway": att.gateway,
            "MacAddress": att.mac, "Networks": networks}


def _prefix(address: str) -> int:
    _, _, n = address.partition("/")
    return int(n) if n.isdigit() else 0


def top(store: st.Store, rec: st.ContainerRecord, ps_args: list[str]) -> str:
    """docker top: the host's ps for the container's processes (its cgroup's), default ``-ef``."""
    import subprocess

    from ocibox.containers._lifecycle import _cgroup

    if state_word(rec) not in ("running", "paused"):
        raise errors.UsageError(f"container {rec.name} is not running")
    pids = _cgroup(rec).procs()
    if not pids:
        raise errors.UsageError(f"container {rec.name} has no processes")
    args = ps_args or ["-f"]
    r = subprocess.run(["ps", *args, "-p", ",".join(map(str, pids))], capture_output=True, text=True, check=False)
    if r.returncode not in (0, 1):
        raise errors.UsageError(f"ps {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout.rstrip("\n")


def stats(store: st.Store, recs: list[st.ContainerRecord], interval: float = 0.5) -> list[dict[str, Any]]:
    """docker stats --no-stream: CPU % over ``interval``, memory usage and limit, pids."""
    import os

    from ocibox.containers._lifecycle import _cgroup

    running = [r for r in recs if state_word(r) in ("running", "paused") and r.cgroup]
    cgs = {r.id: _cgroup(r) for r in running}
    first = {cid: cg.stats() for cid, cg in cgs.items()}
    t0 = time.monotonic()
    if cgs:
        time.sleep(interval)
    dt = time.monotonic() - t0
    out = []
    for r in recs:
        s = cgs[r.id].stats() if r.id in cgs else {}
        cpu = 0.0
        if r.id in cgs and dt > 0:
            cpu = (s.get("cpu_usage_ns", 0) - first[r.id].get("cpu_usage_ns", 0)) / (dt * 1e9) * 100
        limit = s.get("memory_limit", 0)
        if not limit or limit >= 1 << 60:
            limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        usage = max(s.get("memory_usage", 0) - s.get("memory_cache", 0), 0)
        out.append({"ID": r.id, "Name": r.name, "CPUPerc": cpu, "MemUsage": usage, "MemLimit": limit,
                    "MemPerc": 100.0 * usage / limit if limit else 0.0, "PIDs": s.get("pids", 0)})
    return out
