"""A container's life on the networks: ``check`` (before anything exists), ``new_netns``, ``attach``
(CNI ADD, names), ``detach`` (CNI DEL, names, the netns), ``repair`` (the same for containers that
died without it), and what the runner and ``ocibox port`` read back.

Every step is written to the container's record (``_state``) before and after it is made, so a later
``detach`` undoes exactly what exists: the networks whose ADD started (each with the result so far,
DEL's prevResult), the DNS entries, the netns made by ``new_netns``. All CNI calls hold the host-wide
CNI lock (see ``_paths``).
"""

from __future__ import annotations

from ocibox._record import replace
from ocibox.errors import NetworkError
from ocibox.network import _cni, _dns, _state
from ocibox.network._conflist import check_address, with_data_dir, without_default_route
from ocibox.network._model import Attachments, Endpoint, NetworkRequest, PortMapping
from ocibox.network._paths import (
    cni_lock,
    cni_mark_ready,
    cni_ready,
    flock,
    ipam_dir,
    netns_path,
    state_dir,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from ocibox.network._model import Network
    from ocibox.settings import Settings


def _same(conflist: dict[str, Any]) -> dict[str, Any]:
    return conflist


def _networks(request: NetworkRequest) -> list[Network]:
    from ocibox.network._networks import load

    return [load(n) for n in request.networks]


def _new_record(container_id: str, name: str = "") -> dict[str, Any]:
    return {"id": container_id, "name": name, "owner": _state.owner(), "phase": "reserved", "netns": "",
            "own_netns": False, "ports": [], "networks": []}


# ------------------------------------------------------------------------------------ before
def check(settings: Settings, request: NetworkRequest, container_id: str, container_name: str = "") -> NetworkRequest:
    """Everything that can be known before the container is made, made sure of: the networks exist
    (the default one is written on first use), their plugins and the DNS server are installed, --ip
    is inside the first network and free, and the host ports are free; random and ranged host ports
    are chosen and reserved for this container. Returns the request with every host port fixed.
    ``NetworkError`` with one line otherwise, and then nothing is reserved. In the other modes only
    ``ns:PATH`` is checked (a namespace must be mounted there) and the request comes back as it is."""
    if request.mode == "ns":
        from ocibox.network._netns import netns_exists

        if not netns_exists(request.target):
            raise NetworkError(f"--network ns:{request.target}: no network namespace is mounted there")
    if not request.uses_cni:
        return request
    nets = _networks(request)
    path = _cni.cni_path()
    for net in nets:
        _cni.check_plugins(net.conflist, path)
    if any(n.dns_enabled for n in nets):
        _dns.require()
    if request.ip:
        first = nets[0]
        check_address(first.subnet, first.gateway, request.ip, first.name)
        if (ipam_dir(settings) / first.name / request.ip).exists():
            _wait_for_teardowns(settings, container_id)
        if (ipam_dir(settings) / first.name / request.ip).exists():
            raise NetworkError(f"--ip {request.ip} is already in use on network {first.name!r}: choose another address")
    if not request.ports:
        return request
    from ocibox.network._ports import allocate

    _wait_for_teardowns(settings, container_id)
    with flock(state_dir(settings) / "ports.lock"):
        taken = []
        for rec in _state.load_all(settings):
            if rec.get("id") != container_id:
                who = f"container {rec.get('name') or str(rec.get('id', ''))[:12]}"
                taken += [(PortMapping.from_dict(p), who) for p in rec.get("ports", [])]
        ports = allocate(request.ports, taken)
        with _state.locked(settings, container_id) as h:
            data = h.data or _new_record(container_id, container_name)
            data["ports"] = [p.to_dict() for p in ports]
            data["owner"] = _state.owner()
            h.data = data
            h.save()
    return replace(request, ports=ports)


def new_netns(settings: Settings, container_id: str) -> str:
    """A new network namespace for the container, loopback up, bind-mounted at
    ``/run/netns/ocibox-<id>``; its path (for the container config's network namespace path).
    ``detach`` removes it. Call it in the host's mount namespace."""
    from ocibox.network._netns import create_netns

    path = netns_path(container_id)
    with _state.locked(settings, container_id) as h:
        if h.data is not None and h.data.get("own_netns"):
            raise NetworkError(f"container {container_id[:12]} has its network namespace already ({path})")
        data = h.data or _new_record(container_id)
        # recorded before it exists: whoever finds the record removes the namespace if it was made
        data.update(netns=path, own_netns=True, owner=_state.owner())
        if data.get("phase") == "reserved":
            data["phase"] = "netns"
        h.data = data
        h.save()
        try:
            create_netns(path)
        except BaseException:
            data.update(netns="", own_netns=False)
            if not data.get("ports") and not data.get("networks"):
                h.delete()
            else:
                h.save()
            raise
    return path


# ------------------------------------------------------------------------------------ attach
def endpoint_of(entry: dict[str, Any]) -> Endpoint | None:
    """The container's side of one network entry of a record, from its CNI result."""
    result = entry.get("result")
    ep = Endpoint(network=str(entry.get("name", "")), ifname=str(entry.get("ifname", "")),
                  bridge=str(entry.get("bridge", "")), dns=bool(entry.get("dns")),
                  gateway=str(entry.get("gateway", "")))
    if not isinstance(result, dict):
        return None
    interfaces = result.get("interfaces") or []
    mac = ""
    for i, itf in enumerate(interfaces):
        if isinstance(itf, dict) and itf.get("sandbox") and itf.get("name") == ep.ifname:
            mac = str(itf.get("mac", ""))
            index = i
            break
    else:
        index = -1
    for ip in result.get("ips") or []:
        if not isinstance(ip, dict) or ":" in str(ip.get("address", "")):
            continue
        if index < 0 or ip.get("interface") in (None, index):
            return replace(ep, address=str(ip.get("address", "")), gateway=str(ip.get("gateway") or ep.gateway),
                           mac=mac)
    return replace(ep, mac=mac)


def _attachments(data: dict[str, Any]) -> Attachments:
    eps = []
    for entry in data.get("networks", []):
        ep = endpoint_of(entry)
        if ep is not None:
            eps.append(ep)
    saved = tuple({k: entry.get(k) for k in ("name", "ifname", "conflist", "runtime_config", "result", "dns")}
                  for entry in data.get("networks", []))
    return Attachments(container_id=str(data["id"]), netns=str(data.get("netns", "")), endpoints=tuple(eps),
                       ports=tuple(PortMapping.from_dict(p) for p in data.get("ports", [])), saved=saved)


def _runtime_config(request: NetworkRequest, net: Network, first: bool, ports: Iterable[PortMapping]) -> dict[str, Any]:
    rc: dict[str, Any] = {}
    if first:
        mappings = [p.to_cni() for p in ports]
        if mappings:
            rc["portMappings"] = mappings
        if request.ip:
            rc["ips"] = [f"{request.ip}/{net.subnet.partition('/')[2]}"]
        if request.mac:
            rc["mac"] = request.mac
    return rc


def attach(settings: Settings, request: NetworkRequest, container_id: str, container_name: str,
           netns: str, *, owner: list[int] | None = None) -> Attachments:
    """CNI ADD of each network of ``request`` (after ``check``) into the namespace ``netns``: eth0 on
    the first network, eth1 on the second...; then the container's names on networks with DNS. On
    failure everything added is deleted again (CNI DEL of every plugin of the lists begun) and
    ``NetworkError`` says which plugin failed; the netns stays (``detach`` removes it). Returns the
    container's addresses, gateway, MACs and published ports (JSON-serializable: ``to_json``).
    ``owner`` (``[pid, start time]``): the process that looks after the container until its PID 1 is
    recorded, when that is not this one (the runner attaches in a child process)."""
    if not request.uses_cni:
        return Attachments(container_id=container_id, netns=netns)
    nets = _networks(request)
    data_dir = str(ipam_dir(settings))
    with _state.locked(settings, container_id) as h:
        data = h.data or _new_record(container_id, container_name)
        if data.get("networks"):
            raise NetworkError(f"container {container_name or container_id[:12]} is already attached to its "
                               f"networks; detach it first")
        ports = [PortMapping.from_dict(p) for p in data.get("ports", [])] or list(request.ports)
        if any(not p.chosen for p in ports):
            raise NetworkError("host ports are not chosen yet: call network.check() before attach()")
        data.update(name=container_name, netns=netns, phase="attaching", owner=owner or _state.owner(),
                    ports=[p.to_dict() for p in ports], dns=list(request.dns), aliases=list(request.aliases))
        data["networks"] = [
            {"name": net.name, "ifname": f"eth{i}",
             "conflist": (without_default_route if i else _same)(with_data_dir(net.conflist, data_dir)),
             "runtime_config": _runtime_config(request, net, i == 0, ports), "result": None, "started": False,
             "dns": net.dns_enabled, "bridge": net.bridge, "gateway": net.gateway, "subnet": net.subnet}
            for i, net in enumerate(nets)]
        h.data = data
        h.save()
        lock = cni_lock(settings)
        keys = [f"bridge:{e['bridge']}" for e in data["networks"]] + (["portmap"] if ports else [])
        ready = cni_ready(lock, keys)
        try:
            with flock(lock, shared=ready):
                for entry in data["networks"]:
                    entry["started"] = True

                    def step(result: dict[str, Any], entry: dict[str, Any] = entry) -> None:
                        entry["result"] = result
                        h.save()

                    _cni.add(entry["conflist"], container_id=container_id, netns=netns, ifname=entry["ifname"],
                             runtime_config=entry["runtime_config"], on_step=step)
                if not ready:
                    cni_mark_ready(lock, keys)
            names = [n for n in (container_name, container_id[:12], *request.aliases) if n]
            for entry in data["networks"]:
                if entry["dns"]:
                    ep = endpoint_of(entry)
                    if ep is None or not ep.ip:
                        raise NetworkError(f"network {entry['name']!r} gave the container no IPv4 address")
                    entry["dns_registered"] = True
                    h.save()
                    _dns.register(settings, entry["name"], entry["gateway"], container_id, [ep.ip], names,
                                  request.dns)
            data["phase"] = "attached"
            h.save()
        except BaseException:
            try:
                _teardown(settings, h, remove_netns=False)
            except NetworkError:
                pass  # the record stays for repair; the first failure is the one to report
            raise
        return _attachments(data)


# ------------------------------------------------------------------------------------ detach
def _teardown(settings: Settings, h: _state.Handle, *, remove_netns: bool) -> None:
    """Undo what the record ``h`` says exists: names, then DEL of each network begun, in reverse, then
    the netns if ``new_netns`` made it. A DEL that fails leaves its network in the record (a later
    repair tries again) and is raised after the others were tried."""
    data = h.data
    assert data is not None
    cid = str(data["id"])
    data["phase"] = "detaching"
    data["owner"] = _state.owner()
    h.save()
    if any(e.get("dns_registered") or e.get("dns") for e in data.get("networks", [])):
        _dns.unregister(settings, cid)
    failed: list[NetworkError] = []
    netns = str(data.get("netns") or "")
    begun = [e for e in data.get("networks", []) if e.get("started")]
    if begun:
        with flock(cni_lock(settings), shared=True):
            for entry in reversed(begun):
                try:
                    _cni.delete(entry["conflist"], container_id=cid, netns=netns, ifname=entry["ifname"],
                                runtime_config=entry.get("runtime_config"), prev_result=entry.get("result"))
                except NetworkError as e:
                    failed.append(e)
                    continue
                data["networks"].remove(entry)
                h.save()
    data["networks"] = [e for e in data.get("networks", []) if e.get("started")]
    if failed:
        h.save()
        raise failed[0]
    if remove_netns and data.get("own_netns") and netns:
        from ocibox.network._netns import remove_netns as _remove

        _remove(netns)
        data["own_netns"] = False
    if remove_netns or not data.get("own_netns"):
        h.delete()
    else:
        data["phase"] = "netns"
        data["ports"] = []
        h.save()


def detach(settings: Settings, container_id: str, attachments: Attachments | str | None = None, *,
           background: bool = False) -> None:
    """Take the container off its networks: names unregistered, CNI DEL of each network in reverse
    (with the saved configuration and cached results), the netns of ``new_netns`` removed, the port
    reservation released. Works from the network room's own record; ``attachments`` (what ``attach``
    returned, or its JSON) is the fallback when that record is lost. Tolerates a netns that is already
    gone and a half-made attach; a second call does nothing. ``NetworkError`` if a plugin's DEL
    failed (the record stays, so that ``repair`` tries again).

    ``background=True`` returns at once and leaves the teardown (~0.1 s of plugin runs) to a detached
    grandchild process with /dev/null as its stdio: the record names it as owner meanwhile, so repair
    leaves it alone while it lives and finishes the work if it dies; a ``check`` that needs a host
    port or address it still holds waits for it. Failures are then only visible to the next repair."""
    if background:
        _in_background(settings, container_id, attachments)
        return
    with _state.locked(settings, container_id) as h:
        if _adopt(h, container_id, attachments):
            _teardown(settings, h, remove_netns=True)


def _in_background(settings: Settings, container_id: str, attachments: Attachments | str | None) -> None:
    import os

    # Everything the teardown imports is imported before the fork: a child of a process with other
    # threads must not import (one of them may hold the import lock).
    import subprocess  # noqa: F401

    from ocibox.network import _netns  # noqa: F401

    with _state.locked(settings, container_id) as h:
        if not _adopt(h, container_id, attachments):
            return
        assert h.data is not None
        h.data["phase"] = "detaching"
        h.save()
        # The record's lock goes to the grandchild with the open file: check() of a new container
        # that waits for this teardown blocks on it until the grandchild is done.
        pid = os.fork()
        if pid:
            os.waitpid(pid, 0)
            return
        try:
            os.setsid()
            if os.fork():  # the grandchild goes on, reparented: nobody has to wait for it
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, h.fd)
            os.closerange(h.fd + 1, 65536)
            _teardown(settings, h, remove_netns=True)
        except BaseException:
            pass
        finally:
            os._exit(0)


def _adopt(h: _state.Handle, container_id: str, attachments: Attachments | str | None) -> bool:
    """Whether there is something to tear down: the record, else (when it is lost) the runner's copy
    of what attach returned, as long as its netns still exists."""
    if h.data is not None:
        return True
    if attachments is None:
        return False
    att = Attachments.from_json(attachments) if isinstance(attachments, str) else attachments
    from ocibox.network._netns import netns_exists

    if not att.saved or not netns_exists(att.netns):
        return False  # already deleted: the netns goes last
    h.data = {"id": container_id, "name": "", "owner": _state.owner(), "phase": "detaching",
              "netns": att.netns, "own_netns": att.netns == netns_path(container_id), "ports": [],
              "networks": [dict(s, started=True) for s in att.saved]}
    return True


def _wait_for_teardowns(settings: Settings, container_id: str) -> None:
    """Wait until teardowns that other processes are running (a background ``detach``) are over: they
    still hold host ports and addresses a new container may ask for."""
    for rec in _state.load_all(settings):
        cid = str(rec.get("id", ""))
        if cid != container_id and rec.get("phase") == "detaching":
            with _state.locked(settings, cid):
                pass


def repair(settings: Settings, live_container_ids: Iterable[str],
           still_live: Callable[[str], bool] | None = None) -> list[str]:
    """Detach every container of this store that has network state but is neither in
    ``live_container_ids`` nor being handled by a live ocibox process (the one that wrote its record);
    drop DNS entries of unknown containers and stop a DNS server that serves nothing. Returns the ids
    torn down; a teardown that fails is left for the next repair.

    ``live_container_ids`` is a snapshot: a container whose start finished after it was taken (its
    owner, the ``run -d`` that made it, gone meanwhile) would look dead. So each candidate is looked at
    again under its record's lock: the owner read anew, and ``still_live(id)`` (the runner's fresh look
    at the container's record) asked last, when the owner is known to be gone."""
    live = set(live_container_ids)
    done = []
    for rec in _state.load_all(settings):
        cid = str(rec.get("id", ""))
        if not cid or cid in live or _state.owner_alive(rec):
            continue
        try:
            with _state.locked(settings, cid) as h:
                if h.data is None or _state.owner_alive(h.data) or (still_live is not None and still_live(cid)):
                    continue
                _teardown(settings, h, remove_netns=True)
        except NetworkError:
            continue
        done.append(cid)
    keep = live | {str(r.get("id")) for r in _state.load_all(settings)}
    if _dns.binary() is not None or _dns.running_pid(settings) is not None:
        _dns.tidy(settings, keep)
    return done


# ------------------------------------------------------------------------------------ reading back
def attachments(settings: Settings, container_id: str) -> Attachments | None:
    """What the network room knows of a container's networks now, None when it has no record."""
    data = _state.load(settings, container_id)
    return _attachments(data) if data is not None else None


def ports(attachments: Attachments | str, private: str = "") -> list[PortMapping]:
    """``ocibox port CONTAINER [PRIVATE_PORT[/PROTO]]``: the container's published ports (each ``str()``
    is docker's line ``80/tcp -> 0.0.0.0:8080``), only those of ``private`` when given."""
    att = Attachments.from_json(attachments) if isinstance(attachments, str) else attachments
    out = sorted(att.ports)
    if private:
        port, _, proto = private.partition("/")
        out = [p for p in out if str(p.container_port) == port and (not proto or p.protocol == proto.lower())]
    return out


def cni_check(settings: Settings, container_id: str) -> None:
    """CNI CHECK of each network the container is attached to: ``NetworkError`` when a plugin finds its
    part missing or changed."""
    data = _state.load(settings, container_id)
    if data is None or data.get("phase") != "attached":
        raise NetworkError(f"container {container_id[:12]} is not attached to any network")
    with flock(cni_lock(settings), shared=True):
        for entry in data.get("networks", []):
            _cni.check(entry["conflist"], container_id=container_id, netns=str(data.get("netns", "")),
                       ifname=entry["ifname"], runtime_config=entry.get("runtime_config"),
                       prev_result=entry.get("result") or {})
