"""``ocibox run`` flags: docker's names and docker's (pflag's) parsing rules, into a RunFlags value.

The table below is the one description of the options; the parser and ``--help`` are both made
from it by :class:`ocibox.options.Parser` (docker's rules: ``--name VALUE`` or ``--name=VALUE``,
short options cluster (``-it``, ``-eFOO=1``, ``-e=FOO``), no abbreviations, ``--`` ends the
options). Not interspersed, as docker's run: the first argument that is not an option is IMAGE,
and everything after it is the command, verbatim.
"""

from __future__ import annotations

import os
import posixpath

from ocibox.errors import UsageError
from ocibox.options import Parser
from ocibox.run import _hardening
from ocibox.run._plain import NetFlags
from ocibox.run._spec import Mount, RunFlags
from ocibox.units import parse_size

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DESCRIPTION = "Run a command in a new container (fresh namespaces, pivot_root, cgroup limits)."

# (names, kind, metavar, help); kind: "bool", "str", "int", "list" (repeatable) or a tuple of choices.
# The destination is the first long name without dashes, with "-" as "_".
OPTIONS: tuple[tuple[tuple[str, ...], Any, str, str], ...] = (
    (("-e", "--env"), "list", "NAME[=VALUE]", "set an environment variable"),
    (("--env-file",), "list", "FILE", "read environment variables from a file"),
    (("-w", "--workdir"), "str", "DIR", "working directory inside the container"),
    (("-u", "--user"), "str", "USER[:GROUP]", "user[:group] (name or number) to run as"),
    (("--entrypoint",), "str", "CMD", "override the image's entrypoint ('' clears it)"),
    (("-h", "--hostname"), "str", "NAME", "container host name (default: the short container id)"),
    (("--help",), "bool", "", "show this help and exit"),
    (("-v", "--volume"), "list", "HOST:CTR[:ro]", "bind mount a host path"),
    (("--tmpfs",), "list", "PATH[:OPTS]", "mount a tmpfs"),
    (("--read-only",), "bool", "", "mount the root filesystem read-only"),
    (("-i", "--interactive"), "bool", "", "keep stdin open"),
    (("-t", "--tty"), "bool", "", "allocate a pseudo-terminal"),
    (("--rm",), "bool", "", "remove the container when it exits"),
    (("-d", "--detach"), "bool", "", "run the container in the background and print its id"),
    (("--name",), "str", "NAME", "container name"),
    (("--restart",), "str", "POLICY", "restart policy of a detached container: no, on-failure[:N], always, "
     "unless-stopped (applied while its monitor runs: not after a reboot)"),
    (("--stop-signal",), "str", "SIGNAL", "signal that stops the container (default: the image's StopSignal, "
     "else SIGTERM)"),
    (("--stop-timeout",), "int", "SECONDS", "seconds stop waits before SIGKILL (default 10)"),
    (("--log-opt",), "list", "OPT", "logging of a detached container: max-size=SIZE, max-file=N (rotation)"),
    (("-l", "--label"), "list", "KEY=VALUE", "set a label on the container"),
    (("--network", "--net"), "list", "NETWORK", "bridge (the default: network 'ocibox'), a network's name, none (only "
     "loopback), host, container:NAME|ID, ns:PATH"),
    (("-p", "--publish"), "list", "[IP:][HOSTPORT:]PORT[/PROTO]", "publish a container's port on the host (ranges; no "
     "HOSTPORT: a random one)"),
    (("-P", "--publish-all"), "bool", "", "publish every port the image exposes on random host ports"),
    (("--dns",), "list", "IP", "a DNS server for the container's /etc/resolv.conf"),
    (("--dns-search",), "list", "DOMAIN", "a DNS search domain"),
    (("--dns-option",), "list", "OPT", "a resolv.conf option"),
    (("--add-host",), "list", "NAME:IP", "an /etc/hosts entry (IP may be host-gateway)"),
    (("--ip",), "str", "IPV4", "the container's address on its (first) network"),
    (("--mac-address",), "str", "MAC", "the container's MAC address"),
    (("--sysctl",), "list", "KEY=VALUE", "a namespaced kernel parameter (net.*, kernel.shm*, fs.mqueue.*...)"),
    (("--network-alias",), "list", "NAME", "another name of the container on its user networks"),
    (("-m", "--memory"), "str", "SIZE", "memory limit (e.g. 64m)"),
    (("--memory-swap",), "str", "SIZE", "memory plus swap limit; -1 unlimited"),
    (("--cpus",), "str", "N", "number of CPUs (cfs quota)"),
    (("-c", "--cpu-shares"), "int", "N", "relative CPU weight"),
    (("--cpuset-cpus",), "str", "LIST", "CPUs the container may use (0-1, 0,2)"),
    (("--pids-limit",), "int", "N", "maximum number of processes (-1 unlimited)"),
    (("--cap-add",), "list", "CAP", "add a capability (or ALL)"),
    (("--cap-drop",), "list", "CAP", "drop a capability (or ALL)"),
    (("--init",), "bool", "", "run a minimal reaper as PID 1"),
    (("--platform",), "str", "OS/ARCH[/VARIANT]", "platform to pull if the image is missing"),
    (("--pull",), ("missing", "always", "never"), "WHEN", "when to pull the image: missing, always or never"),
    (("--cgroup-parent",), "str", "PATH", "parent cgroup (default: the caller's own)"),
    *_hardening.OPTIONS,  # --security-opt, --device, --ulimit, --privileged
)
ARGS = (("image", "IMAGE", ""), ("command", "[COMMAND] [ARG...]", ""))

PARSER = Parser("ocibox run", OPTIONS, ARGS, description=DESCRIPTION, interspersed=False,
                defaults={"entrypoint": None, "stop_timeout": None})  # absent, not "" or 0


def format_help() -> str:
    return PARSER.format_help()


def parse_args(argv: list[str], prog: str = "ocibox run") -> dict[str, Any]:
    """The options by destination name, plus ``image`` and ``command``; ``--help`` prints and exits
    (``prog``: the command as typed, ``ocibox container run`` too)."""
    if prog != PARSER.prog:
        return Parser(prog, OPTIONS, ARGS, description=DESCRIPTION, interspersed=False,
                      defaults={"entrypoint": None, "stop_timeout": None}).parse(argv)
    return PARSER.parse(argv)


def parse_env(env_files: list[str], envs: list[str], environ: Mapping[str, str]) -> list[str]:
    """--env-file entries first, then -e (docker's order), as NAME=VALUE."""
    out: list[str] = []
    for path in env_files:
        out += parse_env_file(path, environ)
    for e in envs:
        out += _env_entry(e, environ, "-e")
    return out


def parse_env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError as e:
        raise UsageError(f"cannot read --env-file {path}: {e.strerror}") from None
    out: list[str] = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        out.extend(_env_entry(line, environ, f"--env-file {path}"))
    return out


def _env_entry(text: str, environ: Mapping[str, str], what: str) -> list[str]:
    name, eq, _ = text.partition("=")
    if not name or any(c.isspace() for c in name):
        raise UsageError(f"invalid environment variable {text!r} in {what}: use NAME=VALUE")
    if eq:
        return [text]
    # docker: "-e NAME" takes the value from the caller's environment, or is dropped.
    return [f"{name}={environ[name]}"] if name in environ else []


def parse_volume(text: str) -> Mount:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {text!r}: use HOST:CONTAINER[:ro|rw]")
    host, ctr = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    if not host.startswith("/"):
        raise UsageError(f"invalid volume {text!r}: named volumes are not supported; give an absolute host path")
    if not ctr.startswith("/"):
        raise UsageError(f"invalid volume {text!r}: the container path must be absolute")
    ro = False
    for o in opts:
        if o == "ro":
            ro = True
        elif o not in ("rw", "z", "Z", ""):
            raise UsageError(f"invalid volume option {o!r} in {text!r}: use ro or rw")
    return Mount("bind", posixpath.normpath(ctr), source=os.path.abspath(host), readonly=ro)


_TMPFS_FLAGS = {"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec"}


def parse_tmpfs(text: str) -> Mount:
    path, _, opts = text.partition(":")
    if not path.startswith("/"):
        raise UsageError(f"invalid --tmpfs {text!r}: the path must be absolute")
    flags = {"nosuid": True, "nodev": True, "noexec": True}
    data = []
    ro = False
    for o in filter(None, opts.split(",")):
        if o in _TMPFS_FLAGS:
            if o in ("ro", "rw"):
                ro = o == "ro"
            elif o.startswith("no"):
                flags[o] = True
            else:
                flags["no" + o] = False
        elif o.split("=")[0] in ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"):
            data.append(o)
        else:
            raise UsageError(f"invalid --tmpfs option {o!r}: use size=, mode=, uid=, gid=, ro, exec, dev, suid")
    return Mount("tmpfs", posixpath.normpath(path), readonly=ro,
                 flags=tuple(sorted(k for k, v in flags.items() if v)), data=",".join(data))


def parse_run_args(argv: list[str], environ: Mapping[str, str] | None = None, prog: str = "ocibox run") -> RunFlags:
    env_map = os.environ if environ is None else environ
    ns = parse_args(argv, prog)
    env: list[str] = []
    for path in ns["env_file"]:
        env += parse_env_file(path, env_map)
    for e in ns["env"]:
        env += _env_entry(e, env_map, "-e")
    net = NetFlags(tuple(ns["network"]), tuple(ns["publish"]), ns["publish_all"], tuple(ns["dns"]),
                   tuple(ns["dns_search"]), tuple(ns["dns_option"]), tuple(ns["add_host"]), ns["ip"],
                   ns["mac_address"], tuple(ns["network_alias"]))
    network = net.mode()
    cpus = 0.0
    if ns["cpus"]:
        try:
            cpus = float(ns["cpus"])
        except ValueError:
            raise UsageError(f"invalid --cpus {ns['cpus']!r}: use a number such as 0.5 or 2") from None
        if cpus <= 0 or cpus > (os.cpu_count() or 1) * 1.0:
            raise UsageError(f"invalid --cpus {ns['cpus']}: the range is 0.01 to {os.cpu_count()} (this host's CPUs)")
    memory = parse_size(ns["memory"], "--memory") if ns["memory"] else 0
    if memory == -1:
        memory = 0
    if memory and memory < 6 * 2**20:
        raise UsageError(f"--memory {ns['memory']} is below the minimum of 6m")
    if ns["pids_limit"] < -1:
        raise UsageError("--pids-limit must be a positive number, or -1 for unlimited")
    if ns["cpu_shares"] < 0:
        raise UsageError("--cpu-shares must not be negative")
    restart = parse_restart(ns["restart"]) if ns["restart"] else ("no", 0)
    if ns["rm"] and restart[0] != "no":
        raise UsageError(f"conflicting options: --restart {ns['restart']} and --rm: a container removed when it "
                         "exits cannot be restarted")
    log_size, log_files = parse_log_opts(ns["log_opt"])
    if ns["stop_signal"]:
        from ocibox.run._plain import parse_signal

        parse_signal(ns["stop_signal"], "--stop-signal")
    if ns["name"]:
        from ocibox.run._plain import check_name

        check_name(ns["name"])
    return RunFlags(
        image=ns["image"],
        command=tuple(ns["command"]),
        entrypoint=ns["entrypoint"],
        env=tuple(env),
        workdir=ns["workdir"],
        user=ns["user"],
        hostname=ns["hostname"],
        mounts=tuple([parse_volume(v) for v in ns["volume"]] + [parse_tmpfs(t) for t in ns["tmpfs"]]),
        read_only=ns["read_only"],
        interactive=ns["interactive"],
        tty=ns["tty"],
        rm=ns["rm"],
        name=ns["name"],
        network=network,
        net=net,
        memory=memory,
        memory_swap=parse_size(ns["memory_swap"], "--memory-swap") if ns["memory_swap"] else 0,
        cpus=cpus,
        cpu_shares=ns["cpu_shares"],
        pids_limit=ns["pids_limit"],
        cpuset_cpus=ns["cpuset_cpus"],
        cap_add=tuple(ns["cap_add"]),
        cap_drop=tuple(ns["cap_drop"]),
        init=ns["init"],
        platform=ns["platform"],
        pull=ns["pull"],
        cgroup_parent=ns["cgroup_parent"],
        hardening=_hardening.from_args(ns["security_opt"], ns["device"], ns["ulimit"], ns["privileged"]),
        detach=ns["detach"],
        restart=restart,
        stop_signal=ns["stop_signal"],
        stop_timeout=ns["stop_timeout"],
        log_max_size=log_size,
        log_max_file=log_files,
        labels=tuple(parse_label(x) for x in ns["label"]),
        sysctls=tuple(_sysctl(x) for x in ns["sysctl"]),
    )


def _sysctl(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise UsageError(f"invalid --sysctl {text!r}: use KEY=VALUE (e.g. net.ipv4.ip_forward=1)")
    return key.strip(), value


RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def parse_restart(text: str) -> tuple[str, int]:
    """docker's --restart: no, on-failure[:N], always, unless-stopped -> (name, max retries or 0)."""
    name, sep, count = text.partition(":")
    if name not in RESTART_POLICIES or (sep and (name != "on-failure" or not count.isdigit())):
        raise UsageError(f"invalid --restart {text!r}: use no, on-failure[:MAX-RETRIES], always or unless-stopped")
    return name, int(count) if count else 0


def parse_log_opts(opts: list[str]) -> tuple[int, int]:
    """--log-opt max-size=SIZE and max-file=N (docker's json-file options) -> (bytes, files)."""
    size, files = 0, 1
    for o in opts:
        key, eq, value = o.partition("=")
        if key == "max-size" and eq:
            size = parse_size(value, "--log-opt max-size", unlimited=False)
        elif key == "max-file" and eq and value.isdigit() and int(value) >= 1:
            files = int(value)
        else:
            raise UsageError(f"invalid --log-opt {o!r}: use max-size=SIZE (e.g. 10m) or max-file=N (N >= 1)")
    if files > 1 and not size:
        raise UsageError("--log-opt max-file needs max-size (files rotate when they reach it)")
    return size, files


def parse_label(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key:
        raise UsageError(f"invalid --label {text!r}: use KEY=VALUE")
    return key, value
