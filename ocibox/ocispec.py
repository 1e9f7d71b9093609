"""The OCI runtime configuration (runtime-spec 1.1/1.2, ``config.json``) as value types, parsed at the edge
with a clear error naming the field, and written back to JSON.

This is what the container executor runs (``ocibox.run``): ``ocibox run`` builds one from the image and
the flags, ``ocibox-runtime`` reads one from a bundle that containerd (or conmon, or a person) made. Only
Linux containers exist here. Unknown properties are ignored, as the spec requires; known ones with a
wrong type or value are refused.

``resources`` (the cgroup section) stays a mapping of known keys, validated here and turned into
cgroup limits by ``ocibox.cgroups.limits_from_resources``: forty fields of numbers that pass straight
to cgroup files gain nothing from a record each.
"""

from __future__ import annotations

from ocibox._record import field, record
from ocibox.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.1.0"
NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


class SpecError(UsageError):
    """A config.json that breaks the runtime spec (or asks for what this host cannot give)."""


@record
class User:
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()


@record
class Capabilities:
    """The five sets, names as the spec writes them ("CAP_NET_ADMIN")."""

    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


@record
class Rlimit:
    type: str  # "RLIMIT_NOFILE"
    soft: int
    hard: int


@record
class Process:
    args: tuple[str, ...]
    cwd: str = "/"
    env: tuple[str, ...] = ()
    user: User = field(default_factory=User)
    terminal: bool = False
    console_size: tuple[int, int] | None = None  # (height, width)
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    apparmor_profile: str = ""
    selinux_label: str = ""


@record
class Root:
    path: str
    readonly: bool = False


@record
class IdMapping:
    container_id: int
    host_id: int
    size: int


@record
class Mount:
    destination: str
    type: str = ""
    source: str = ""
    options: tuple[str, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()


@record
class Hook:
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@record
class Hooks:
    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()


@record
class Namespace:
    type: str
    path: str = ""


@record
class Device:
    """A device node to make in the container."""

    type: str  # c, b, u, p
    path: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@record
class SeccompArg:
    index: int
    value: int
    op: str  # SCMP_CMP_EQ ...
    value_two: int = 0


@record
class SeccompRule:
    names: tuple[str, ...]
    action: str  # SCMP_ACT_ALLOW ...
    errno_ret: int | None = None
    args: tuple[SeccompArg, ...] = ()


@record
class Seccomp:
    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str = ""
    syscalls: tuple[SeccompRule, ...] = ()


@record
class Linux:
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    cgroups_path: str = ""
    resources: dict[str, Any] = field(default_factory=dict)
    rootfs_propagation: str = ""
    seccomp: Seccomp | None = None
    sysctl: dict[str, str] = field(default_factory=dict)
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    mount_label: str = ""
    personality: dict[str, Any] = field(default_factory=dict)
    time_offsets: dict[str, Any] = field(default_factory=dict)
    intel_rdt: dict[str, Any] = field(default_factory=dict)

    def namespace(self, kind: str) -> Namespace | None:
        for n in self.namespaces:
            if n.type == kind:
                return n
        return None


@record
class Spec:
    process: Process | None
    root: Root
    linux: Linux = field(default_factory=Linux)
    hostname: str = ""
    domainname: str = ""
    mounts: tuple[Mount, ...] = ()
    hooks: Hooks = field(default_factory=Hooks)
    annotations: dict[str, str] = field(default_factory=dict)
    oci_version: str = OCI_VERSION


# ----------------------------------------------------------------------------- parsing
class _Field:
    """Typed reads of one JSON object, each error naming the field's path."""

    def __init__(self, obj: object, path: str) -> None:
        if not isinstance(obj, dict):
            raise SpecError(f"config.json: {path or 'the document'} must be an object")
        self.obj, self.path = obj, path

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> object:
        return self.obj.get(key)

    def text(self, key: str, default: str = "") -> str:
        v = self.obj.get(key, default)
        if v is None:
            return default
        if not isinstance(v, str):
            raise SpecError(f"config.json: {self.where(key)} must be a string")
        return v

    def flag(self, key: str) -> bool:
        v = self.obj.get(key, False)
        if v is None:
            return False
        if not isinstance(v, bool):
            raise SpecError(f"config.json: {self.where(key)} must be true or false")
        return v

    def num(self, key: str, default: int | None = None, *, minimum: int | None = None) -> int | None:
        v = self.obj.get(key, default)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise SpecError(f"config.json: {self.where(key)} must be an integer")
        if minimum is not None and v < minimum:
            raise SpecError(f"config.json: {self.where(key)} must be at least {minimum}")
        return v

    def strs(self, key: str) -> tuple[str, ...]:
        v = self.obj.get(key) or []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise SpecError(f"config.json: {self.where(key)} must be a list of strings")
        return tuple(v)

    def objs(self, key: str) -> list[_Field]:
        v = self.obj.get(key) or []
        if not isinstance(v, list):
            raise SpecError(f"config.json: {self.where(key)} must be a list")
        return [_Field(x, f"{self.where(key)}[{i}]") for i, x in enumerate(v)]

    def obj_(self, key: str) -> _Field | None:
        v = self.obj.get(key)
        return None if v is None else _Field(v, self.where(key))

    def mapping(self, key: str) -> dict[str, Any]:
        v = self.obj.get(key) or {}
        if not isinstance(v, dict):
            raise SpecError(f"config.json: {self.where(key)} must be an object")
        return dict(v)


def _req_int(f: _Field, key: str, minimum: int | None = None) -> int:
    v = f.num(key, minimum=minimum)
    if v is None:
        raise SpecError(f"config.json: {f.where(key)} is required")
    return v


def _id_mappings(f: _Field, key: str) -> tuple[IdMapping, ...]:
    return tuple(IdMapping(_req_int(m, "containerID", 0), _req_int(m, "hostID", 0), _req_int(m, "size", 1))
                 for m in f.objs(key))


def _hooks(f: _Field | None) -> Hooks:
    if f is None:
        return Hooks()

    def hooks(key: str) -> tuple[Hook, ...]:
        out = []
        for h in f.objs(key):
            path = h.text("path")
            if not path.startswith("/"):
                raise SpecError(f"config.json: {h.where('path')} must be an absolute path")
            out.append(Hook(path, h.strs("args"), h.strs("env"), h.num("timeout", minimum=1)))
        return tuple(out)

    return Hooks(hooks("prestart"), hooks("createRuntime"), hooks("createContainer"), hooks("startContainer"),
                 hooks("poststart"), hooks("poststop"))


def _process(f: _Field) -> Process:
    args = f.strs("args")
    if not args:
        raise SpecError("config.json: process.args must name the program to run")
    cwd = f.text("cwd", "/")
    if not cwd.startswith("/"):
        raise SpecError("config.json: process.cwd must be an absolute path")
    u = f.obj_("user") or _Field({}, f.where("user"))
    umask = u.num("umask", minimum=0)
    gids = u.get("additionalGids") or []
    if not isinstance(gids, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in gids):
        raise SpecError("config.json: process.user.additionalGids must be a list of integers")
    user = User(u.num("uid", 0, minimum=0) or 0, u.num("gid", 0, minimum=0) or 0, umask, tuple(gids))
    caps = None
    c = f.obj_("capabilities")
    if c is not None:
        caps = Capabilities(*(c.strs(k) for k in CAP_SETS))
    rlimits = []
    for r in f.objs("rlimits"):
        kind = r.text("type")
        if not kind.startswith("RLIMIT_"):
            raise SpecError(f"config.json: {r.where('type')} {kind!r} is not an RLIMIT_ name")
        rlimits.append(Rlimit(kind, _req_int(r, "soft", 0), _req_int(r, "hard", 0)))
    size = None
    cs = f.obj_("consoleSize")
    if cs is not None:
        size = (_req_int(cs, "height", 0), _req_int(cs, "width", 0))
    return Process(args=args, cwd=cwd, env=f.strs("env"), user=user, terminal=f.flag("terminal"),
                   console_size=size, capabilities=caps, rlimits=tuple(rlimits),
                   no_new_privileges=f.flag("noNewPrivileges"), oom_score_adj=f.num("oomScoreAdj"),
                   apparmor_profile=f.text("apparmorProfile"), selinux_label=f.text("selinuxLabel"))


def _seccomp(f: _Field | None) -> Seccomp | None:
    if f is None:
        return None
    rules = []
    for s in f.objs("syscalls"):
        args = tuple(SeccompArg(_req_int(a, "index", 0), _req_int(a, "value", 0), a.text("op"),
                                a.num("valueTwo", 0) or 0) for a in s.objs("args"))
        names = s.strs("names")
        if not names:
            raise SpecError(f"config.json: {s.where('names')} must name at least one syscall")
        rules.append(SeccompRule(names, s.text("action"), s.num("errnoRet", minimum=0), args))
    action = f.text("defaultAction")
    if not action:
        raise SpecError("config.json: linux.seccomp.defaultAction is required")
    return Seccomp(action, f.num("defaultErrnoRet", minimum=0), f.strs("architectures"), f.strs("flags"),
                   f.text("listenerPath"), tuple(rules))


def _linux(f: _Field | None) -> Linux:
    if f is None:
        return Linux()
    namespaces = []
    seen = set()
    for n in f.objs("namespaces"):
        kind = n.text("type")
        if kind not in NAMESPACES:
            raise SpecError(f"config.json: {n.where('type')} {kind!r} is not a namespace type "
                            f"({', '.join(NAMESPACES)})")
        if kind in seen:
            raise SpecError(f"config.json: linux.namespaces lists {kind!r} twice")
        seen.add(kind)
        path = n.text("path")
        if path and not path.startswith("/"):
            raise SpecError(f"config.json: {n.where('path')} must be an absolute path")
        namespaces.append(Namespace(kind, path))
    devices = []
    for d in f.objs("devices"):
        kind, path = d.text("type"), d.text("path")
        if kind not in ("c", "b", "u", "p"):
            raise SpecError(f"config.json: {d.where('type')} must be c, b, u or p")
        if not path.startswith("/"):
            raise SpecError(f"config.json: {d.where('path')} must be an absolute path")
        devices.append(Device(kind, path, d.num("major", 0) or 0, d.num("minor", 0) or 0, d.num("fileMode"),
                              d.num("uid"), d.num("gid")))
    prop = f.text("rootfsPropagation")
    if prop and prop not in ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
                             "runbindable"):
        raise SpecError(f"config.json: linux.rootfsPropagation {prop!r} is not a propagation mode")
    sysctl = f.mapping("sysctl")
    if not all(isinstance(v, str) for v in sysctl.values()):
        raise SpecError("config.json: linux.sysctl values must be strings")
    return Linux(tuple(namespaces), _id_mappings(f, "uidMappings"), _id_mappings(f, "gidMappings"), tuple(devices),
                 f.text("cgroupsPath"), f.mapping("resources"), prop, _seccomp(f.obj_("seccomp")), sysctl,
                 f.strs("maskedPaths"), f.strs("readonlyPaths"), f.text("mountLabel"), f.mapping("personality"),
                 f.mapping("timeOffsets"), f.mapping("intelRdt"))


def parse(obj: object) -> Spec:
    """A config.json document (already decoded) as a Spec; SpecError names the first wrong field."""
    f = _Field(obj, "")
    version = f.text("ociVersion")
    if not version:
        raise SpecError("config.json: ociVersion is required")
    if not version.startswith("1."):
        raise SpecError(f"config.json: ociVersion {version!r} is not a 1.x runtime spec")
    r = f.obj_("root")
    if r is None or not r.text("path"):
        raise SpecError("config.json: root.path is required")
    p = f.obj_("process")
    mounts = []
    for m in f.objs("mounts"):
        dest = m.text("destination")
        if not dest.startswith("/"):
            raise SpecError(f"config.json: {m.where('destination')} must be an absolute path")
        mounts.append(Mount(dest, m.text("type"), m.text("source"), m.strs("options"), _id_mappings(m, "uidMappings"),
                            _id_mappings(m, "gidMappings")))
    ann = f.mapping("annotations")
    if not all(isinstance(v, str) for v in ann.values()):
        raise SpecError("config.json: annotations values must be strings")
    return Spec(process=_process(p) if p is not None else None, root=Root(r.text("path"), r.flag("readonly")),
                linux=_linux(f.obj_("linux")), hostname=f.text("hostname"), domainname=f.text("domainname"),
                mounts=tuple(mounts), hooks=_hooks(f.obj_("hooks")), annotations=ann, oci_version=version)


def load(path: str) -> Spec:
    """Read and parse a bundle's config.json."""
    from ocibox import _json  # not json: its pure-Python parts import re (~5 ms of an exec)

    try:
        with open(path, encoding="utf-8") as fh:
            data = _json.loads(fh.read())
    except FileNotFoundError:
        raise SpecError(f"{path} does not exist; a bundle needs a config.json (make one with 'ocibox-runtime spec')") from None
    except (OSError, ValueError) as e:
        raise SpecError(f"{path}: cannot read it as JSON ({e})") from None
    return parse(data)


# ----------------------------------------------------------------------------- writing
def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "", (), [], {})}


def _maps(ms: tuple[IdMapping, ...]) -> list[dict[str, int]]:
    return [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size} for m in ms]


def _hook_list(hs: tuple[Hook, ...]) -> list[dict[str, Any]]:
    return [_drop_empty({"path": h.path, "args": list(h.args), "env": list(h.env), "timeout": h.timeout}) for h in hs]


def to_json(spec: Spec) -> dict[str, Any]:
    """The Spec as a config.json document (what ``parse`` reads back to the same Spec)."""
    out: dict[str, Any] = {"ociVersion": spec.oci_version}
    p = spec.process
    if p is not None:
        user: dict[str, Any] = {"uid": p.user.uid, "gid": p.user.gid}
        if p.user.umask is not None:
            user["umask"] = p.user.umask
        if p.user.additional_gids:
            user["additionalGids"] = list(p.user.additional_gids)
        proc: dict[str, Any] = {"terminal": p.terminal, "user": user, "args": list(p.args), "env": list(p.env),
                                "cwd": p.cwd}
        if p.console_size is not None:
            proc["consoleSize"] = {"height": p.console_size[0], "width": p.console_size[1]}
        if p.capabilities is not None:
            proc["capabilities"] = {k: list(getattr(p.capabilities, k)) for k in CAP_SETS}
        if p.rlimits:
            proc["rlimits"] = [{"type": r.type, "hard": r.hard, "soft": r.soft} for r in p.rlimits]
        proc["noNewPrivileges"] = p.no_new_privileges
        if p.oom_score_adj is not None:
            proc["oomScoreAdj"] = p.oom_score_adj
        proc.update(_drop_empty({"apparmorProfile": p.apparmor_profile, "selinuxLabel": p.selinux_label}))
        out["process"] = proc
    out["root"] = {"path": spec.root.path, "readonly": spec.root.readonly}
    out.update(_drop_empty({"hostname": spec.hostname, "domainname": spec.domainname}))
    out["mounts"] = [_drop_empty({"destination": m.destination, "type": m.type, "source": m.source,
                                  "options": list(m.options), "uidMappings": _maps(m.uid_mappings),
                                  "gidMappings": _maps(m.gid_mappings)}) for m in spec.mounts]
    hooks = _drop_empty({"prestart": _hook_list(spec.hooks.prestart),
                         "createRuntime": _hook_list(spec.hooks.create_runtime),
                         "createContainer": _hook_list(spec.hooks.create_container),
                         "startContainer": _hook_list(spec.hooks.start_container),
                         "poststart": _hook_list(spec.hooks.poststart), "poststop": _hook_list(spec.hooks.poststop)})
    if hooks:
        out["hooks"] = hooks
    if spec.annotations:
        out["annotations"] = dict(spec.annotations)
    lx = spec.linux
    sec = None
    if lx.seccomp is not None:
        s = lx.seccomp
        sec = _drop_empty({
            "defaultAction": s.default_action, "defaultErrnoRet": s.default_errno_ret,
            "architectures": list(s.architectures), "flags": list(s.flags), "listenerPath": s.listener_path,
            "syscalls": [_drop_empty({"names": list(r.names), "action": r.action, "errnoRet": r.errno_ret,
                                      "args": [{"index": a.index, "value": a.value, "valueTwo": a.value_two,
                                                "op": a.op} for a in r.args]}) for r in s.syscalls],
        })
    out["linux"] = _drop_empty({
        "namespaces": [_drop_empty({"type": n.type, "path": n.path}) for n in lx.namespaces],
        "uidMappings": _maps(lx.uid_mappings), "gidMappings": _maps(lx.gid_mappings),
        "devices": [_drop_empty({"type": d.type, "path": d.path, "major": d.major, "minor": d.minor,
                                 "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid}) for d in lx.devices],
        "cgroupsPath": lx.cgroups_path, "resources": lx.resources, "rootfsPropagation": lx.rootfs_propagation,
        "seccomp": sec, "sysctl": lx.sysctl, "maskedPaths": list(lx.masked_paths),
        "readonlyPaths": list(lx.readonly_paths), "mountLabel": lx.mount_label, "personality": lx.personality,
        "timeOffsets": lx.time_offsets, "intelRdt": lx.intel_rdt,
    })
    return out
