"""The container verbs: ps, logs, start, stop, restart, kill, rm, exec, wait, attach, top, inspect, rename,
stats, pause, unpause, container prune, and the monitor's cleanup. Each parses its options (a bad option is
docker's 125), calls ``ocibox.containers`` and prints; a failure of the operation itself is docker's 1
(its daemon's errors), except for ``exec``'s own 126/127 and the container's status."""

from __future__ import annotations

import sys

from ocibox import _json
from ocibox.cli import _out
from ocibox.errors import OciboxError, UsageError
from ocibox.options import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocibox.settings import Settings
    from ocibox.store import ContainerRecord, Store

CONTAINER = (("container", "CONTAINER", ""),)
CONTAINERS = (("container", "CONTAINER...", ""),)


def _json_indented(doc: object) -> str:
    """``inspect``'s output, indented as docker's: json's own job (the default paths use ocibox._json)."""
    import json

    return json.dumps(doc, indent=4)


class _OperationError(OciboxError):
    """An operation on a container failed after its arguments were fine: docker's daemon errors, exit 1."""

    exit_code = 1


def _store(settings: Settings) -> Store:
    from ocibox.store import Store

    return Store(settings.root)


def _each(settings: Settings, names: list[str], act: Any) -> int:
    """docker's way with several containers: act on each, print what it prints, report each failure on
    stderr, exit 1 if any failed."""
    from ocibox import containers

    store = _store(settings)
    failed = False
    for name in names:
        try:
            rec = containers.find(store, name)
            line = act(store, rec)
        except OciboxError as e:
            sys.stderr.write(f"Error: {e}\n")
            failed = True
            continue
        if line is not None:
            _out(str(line))
    return 1 if failed else 0


def _named(names: list[str], act: Any) -> Any:
    """An action that prints the container as the user named it once it is done."""

    def run(store: Store, rec: ContainerRecord) -> str:
        act(store, rec)
        return _as_given(names, rec)

    return run


def _one(settings: Settings, name: str) -> tuple[Store, ContainerRecord]:
    from ocibox import containers

    store = _store(settings)
    try:
        return store, containers.find(store, name)
    except OciboxError as e:
        raise _OperationError(str(e)) from None


# ----------------------------------------------------------------------------- ps
def ls(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("-a", "--all"), "bool", "", "show all containers (default: running only)"),
        (("-q", "--quiet"), "bool", "", "only container ids"),
        (("-n", "--last"), "int", "N", "the N containers created last (all states)"),
        (("-l", "--latest"), "bool", "", "the container created last (all states)"),
        (("--no-trunc",), "bool", "", "do not truncate ids and commands"),
        (("-f", "--filter"), "list", "KEY=VALUE", "status=, name=, label=KEY[=VALUE], ancestor=, id=, exited="),
        (("--format",), "str", "FORMAT", "json, or a Go template like '{{.ID}} {{.Names}}'"),
        (("-s", "--size"), "bool", "", "(accepted for docker's scripts; sizes are in 'system df -v')"),
    ), description="List containers.").parse(argv)
    from ocibox import containers

    store = _store(settings)
    rows = containers.list_containers(store, all_=ns["all"], last=1 if ns["latest"] else ns["last"],
                                      filters=containers.parse_filters(ns["filter"]))
    if ns["quiet"]:
        for r in rows:
            _out(r["ID"] if ns["no_trunc"] else r["ID"][:12])
        return
    fmt = ns["format"]
    if fmt:
        for line in _format(rows, fmt):
            _out(line)
        return
    from ocibox.cli._render import table

    body = [[r["ID"] if ns["no_trunc"] else r["ID"][:12], r["Image"],
             _json.dumps(r["Command"] if ns["no_trunc"] else _ellipsis(r["Command"], 20), ensure_ascii=False),
             r["RunningFor"], r["Status"], r["Ports"], r["Names"]] for r in rows]
    for line in table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], body):
        _out(line)


def _ellipsis(text: str, width: int) -> str:
    """docker's stringutils.Ellipsis: at most ``width`` characters, the last one '…' when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _format(rows: list[dict[str, Any]], fmt: str) -> list[str]:
    """--format: 'json' (one object a line, docker's keys), or a Go template's simple cases: {{.Field}},
    {{json .}}, {{json .Field}}, {{.Label "key"}}, a leading 'table' for a header, \\t and \\n."""
    import re

    if fmt == "json":
        return [_json.dumps({k: v for k, v in r.items() if k not in ("Created", "ExitCode", "ImageID")})
                for r in rows]
    table = fmt.startswith("table")
    body = fmt[5:].lstrip() if table else fmt
    body = body.replace("\\t", "\t").replace("\\n", "\n")
    token = re.compile(r"{{\s*(json\s+)?\.(\w*)(?:\s+\"([^\"]*)\")?\s*}}")

    def render(r: dict[str, Any]) -> str:
        def one(m: re.Match[str]) -> str:
            as_json, name, arg = m.group(1), m.group(2), m.group(3)
            if name == "Label":
                labels: dict[str, str] = dict(p.split("=", 1) for p in str(r["Labels"]).split(",") if "=" in p)
                return labels.get(arg or "", "")
            value = r if not name else r.get(name, "")
            return _json.dumps(value) if as_json else str(value)

        return token.sub(one, body)

    lines = [render(r) for r in rows]
    if table:
        header = token.sub(lambda m: _HEADERS.get(m.group(2), m.group(2).upper()), body)
        lines.insert(0, header)
    if "\t" in body:
        from ocibox.cli._render import table as tabulate

        split = [line.split("\t") for line in lines]
        if table:
            return tabulate(split[0], split[1:])
        return tabulate([""] * len(split[0]), split)[1:] if split else []
    return lines


_HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
            "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "State": "STATE",
            "CreatedAt": "CREATED AT", "Labels": "LABELS"}


# ----------------------------------------------------------------------------- lifecycle
def start(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (
        (("-a", "--attach"), "bool", "", "attach stdout/stderr and wait for the exit (its status is ours)"),
        (("-i", "--interactive"), "bool", "", "attach stdin too"),
    ), CONTAINERS, description="Start one or more stopped containers.").parse(argv)
    from ocibox import containers

    if ns["attach"] or ns["interactive"]:
        if len(ns["container"]) != 1:
            raise UsageError(f"{prog}: you cannot start and attach multiple containers at once")
        store, rec = _one(settings, ns["container"][0])
        try:
            rec = containers.start(settings, store, rec)
            code = containers.attach(store, rec, stdin=ns["interactive"], tty=_tty(rec))
        except OciboxError as e:
            raise _OperationError(str(e)) from None
        return code if code is not None else 0
    return _each(settings, ns["container"], _named(ns["container"],
                                                   lambda store, rec: containers.start(settings, store, rec)))


def _as_given(names: list[str], rec: ContainerRecord) -> str:
    """docker prints each container as the user named it."""
    for n in names:
        if n in (rec.id, rec.name) or rec.id.startswith(n):
            return str(n)
    return rec.name


def _tty(rec: ContainerRecord) -> bool:
    return bool(rec.setting_map.get("tty"))


def stop(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (
        (("-t", "--time"), "int", "SECONDS", "seconds to wait before killing it (default: its --stop-timeout, 10)"),
        (("-s", "--signal"), "str", "SIGNAL", "signal to send (default: its stop signal)"),
    ), CONTAINERS, description="Stop one or more running containers.", defaults={"time": None}).parse(argv)
    from ocibox import containers
    from ocibox.run import parse_signal

    sig = parse_signal(ns["signal"], "--signal") if ns["signal"] else None
    return _each(settings, ns["container"], _named(ns["container"],
                                                   lambda store, rec: containers.stop(store, rec, ns["time"], sig)))


def restart(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (
        (("-t", "--time"), "int", "SECONDS", "seconds to wait before killing it"),
    ), CONTAINERS, description="Restart one or more containers.", defaults={"time": None}).parse(argv)
    from ocibox import containers

    def again(store: Store, rec: ContainerRecord) -> str:
        rec = containers.stop(store, rec, ns["time"])
        containers.start(settings, store, rec)
        return _as_given(ns["container"], rec)

    return _each(settings, ns["container"], again)


def kill(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, ((("-s", "--signal"), "str", "SIGNAL", "signal to send (default SIGKILL)"),), CONTAINERS,
                description="Kill one or more running containers.", defaults={"signal": "SIGKILL"}).parse(argv)
    from ocibox import containers
    from ocibox.run import parse_signal

    sig = parse_signal(ns["signal"], "--signal")
    return _each(settings, ns["container"], _named(ns["container"], lambda store, rec: containers.kill(store, rec, sig)))


def pause(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (), CONTAINERS, description="Pause all processes within one or more containers.").parse(argv)
    from ocibox import containers

    return _each(settings, ns["container"], _named(ns["container"], containers.pause))


def unpause(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (), CONTAINERS, description="Unpause all processes within one or more containers.").parse(argv)
    from ocibox import containers

    return _each(settings, ns["container"], _named(ns["container"], containers.unpause))


def rm(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (
        (("-f", "--force"), "bool", "", "force the removal of a running container (SIGKILL)"),
        (("-v", "--volumes"), "bool", "", "(accepted: ocibox has no named volumes)"),
    ), CONTAINERS, description="Remove one or more containers.").parse(argv)
    from ocibox import containers

    return _each(settings, ns["container"], _named(ns["container"],
                                                   lambda store, rec: containers.remove(store, rec, force=ns["force"])))


def wait(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (), CONTAINERS, description="Block until one or more containers stop, then print their "
                "exit codes.").parse(argv)
    from ocibox import containers

    return _each(settings, ns["container"], lambda store, rec: containers.wait(store, rec))


def rename(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (), (("container", "CONTAINER", ""), ("new", "NEW_NAME", "")),
                description="Rename a container.").parse(argv)
    from ocibox import containers

    store, rec = _one(settings, ns["container"])
    try:
        containers.rename(store, rec, ns["new"])
    except OciboxError as e:
        raise _OperationError(str(e)) from None


def prune(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("-f", "--force"), "bool", "", "do not ask"),
        (("--filter",), "list", "until=DURATION", "only containers created before (e.g. until=24h)"),
    ), description="Remove all stopped containers.").parse(argv)
    from ocibox import containers
    from ocibox.units import parse_until

    until = None
    for f in ns["filter"]:
        key, eq, value = f.partition("=")
        if key != "until" or not eq:
            raise UsageError(f"{prog}: invalid --filter {f!r}: use until=DURATION (e.g. until=24h)")
        until = parse_until(value)
    if not ns["force"] and sys.stdin.isatty():
        sys.stderr.write("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return
    from ocibox.store import DiskUsage

    store = _store(settings)
    before = DiskUsage().tree(store.containers)
    gone = containers.prune_containers(store, until)
    freed = max(before - DiskUsage().tree(store.containers), 0)
    from ocibox.units import human_size

    if gone:
        _out("Deleted Containers:")
        for cid in gone:
            _out(cid)
        _out()
    _out(f"Total reclaimed space: {human_size(freed)}")


# ----------------------------------------------------------------------------- looking at them
def inspect(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, ((("-f", "--format"), "str", "FORMAT", "a Go template's simple cases ({{.State.Status}})"),),
                CONTAINERS, description="Display detailed information on one or more containers.").parse(argv)
    from ocibox import containers

    store = _store(settings)
    return inspect_each(ns["container"], lambda name: [containers.inspect(store, containers.find(store, name))],
                        ns["format"])


def inspect_each(names: list[str], docs: Any, fmt: str | None) -> int:
    """docker inspect's way: the documents of each name (``docs(name)``) as one JSON array, or each one
    through the --format template; a name that fails is reported on stderr and makes the exit 1."""
    out: list[dict[str, Any]] = []
    failed = False
    for name in names:
        try:
            out += docs(name)
        except OciboxError as e:
            sys.stderr.write(f"Error: {e}\n")
            failed = True
    if fmt:
        for doc in out:
            _out(_template(doc, fmt))
    else:
        _out(_json_indented(out))
    return 1 if failed else 0


def _template(doc: dict[str, Any], fmt: str) -> str:
    """{{.A.B}} and {{json .A}} over an inspect document."""
    import re

    def one(m: re.Match[str]) -> str:
        value: Any = doc
        for part in filter(None, m.group(2).split(".")):
            value = value.get(part, "") if isinstance(value, dict) else ""
        if m.group(1):
            return _json.dumps(value)
        return str(value).lower() if isinstance(value, bool) else str(value)

    return re.sub(r"{{\s*(json\s+)?\.([\w.]*)\s*}}", one, fmt)


def inspect_any(settings: Settings, argv: list[str], prog: str) -> int:
    """docker inspect: a container of that name, else an image."""
    ns = Parser(prog, ((("-f", "--format"), "str", "FORMAT", "a Go template's simple cases ({{.Id}})"),
                       (("--type",), ("", "container", "image"), "TYPE", "container or image"),),
                (("name", "NAME...", ""),), description="Display detailed information on containers or images.",
                ).parse(argv)
    from ocibox import cache, containers
    from ocibox import store as st

    store = _store(settings)
    out: list[dict[str, Any]] = []
    failed = False
    for name in ns["name"]:
        doc = None
        if ns["type"] in ("", "container"):
            try:
                doc = containers.inspect(store, containers.find(store, name))
            except st.NoSuchContainer:
                doc = None
        if doc is None and ns["type"] in ("", "image"):
            try:
                doc = cache.inspect_image(settings, name)
            except OciboxError:
                doc = None
        if doc is None:
            sys.stderr.write(f"Error: no such object: {name}\n")
            failed = True
            continue
        out.append(doc)
    if ns["format"]:
        for d in out:
            _out(_template(d, ns["format"]))
    else:
        _out(_json_indented(out))
    return 1 if failed else 0


def logs(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("-f", "--follow"), "bool", "", "follow the output until the container exits"),
        (("-n", "--tail"), "str", "N", "only the last N lines (default: all)"),
        (("--since",), "str", "TIME", "only lines since a time (RFC 3339, unix time) or a duration (10m)"),
        (("--until",), "str", "TIME", "only lines before a time or a duration ago"),
        (("-t", "--timestamps"), "bool", "", "show each line's time"),
    ), CONTAINER, description="Fetch the logs of a container.", defaults={"tail": "all"}).parse(argv)
    from ocibox import containers

    tail = -1
    if ns["tail"] != "all":
        if not ns["tail"].isdigit():
            raise UsageError(f"{prog}: invalid --tail {ns['tail']!r}: use a number or all")
        tail = int(ns["tail"])
    store, rec = _one(settings, ns["container"])
    outs = {b"stdout": sys.stdout.buffer, b"stderr": sys.stderr.buffer}

    def write(stream: bytes, data: bytes) -> None:
        f = outs.get(stream, sys.stdout.buffer)
        f.write(data)
        if ns["follow"]:
            f.flush()

    try:
        containers.logs(store, rec, write, follow=ns["follow"], tail=tail, since=ns["since"], until=ns["until"],
                        timestamps=ns["timestamps"])
    except OciboxError as e:
        raise _OperationError(str(e)) from None
    finally:
        sys.stdout.buffer.flush()
        sys.stderr.buffer.flush()


def attach(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, (
        (("--no-stdin",), "bool", "", "do not attach stdin"),
        (("--detach-keys",), "str", "KEYS", "(ctrl-p,ctrl-q: the only sequence ocibox knows)"),
    ), CONTAINER, description="Attach this terminal to a running container (detach with ctrl-p ctrl-q).").parse(argv)
    from ocibox import containers

    store, rec = _one(settings, ns["container"])
    try:
        code = containers.attach(store, rec, stdin=not ns["no_stdin"], tty=_tty(rec))
    except OciboxError as e:
        raise _OperationError(str(e)) from None
    if code is None:
        sys.stderr.write("\nread escape sequence\n")
        return 0
    return code


def top(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (), (("container", "CONTAINER", ""), ("ps_args", "[ps OPTIONS]", "")),
                description="Display the running processes of a container.", interspersed=False).parse(argv)
    from ocibox import containers

    store, rec = _one(settings, ns["container"])
    try:
        _out(containers.top(store, rec, list(ns["ps_args"] or [])))
    except OciboxError as e:
        raise _OperationError(str(e)) from None


def stats(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("--no-stream",), "bool", "", "one sample, then exit (the only mode ocibox has)"),
        (("-a", "--all"), "bool", "", "all containers (default: running)"),
        (("--format",), "str", "FORMAT", "json"),
    ), (("container", "[CONTAINER...]", ""),), description="Display a sample of containers' resource usage.").parse(argv)
    from ocibox import containers
    from ocibox.units import human_size

    store = _store(settings)
    if ns["container"]:
        recs = [containers.find(store, n) for n in ns["container"]]
    else:
        recs = [r for r in containers.repair_all(store)[0]
                if ns["all"] or (r.state in ("running", "paused") and r.alive)]
    rows = containers.stats(store, recs)
    if ns["format"] == "json":
        for r in rows:
            _out(_json.dumps(r))
        return
    from ocibox.cli._render import table

    def b(n: float) -> str:  # docker shows binary units here: MiB, GiB
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if n >= size:
                return f"{n / size:.2f}{unit}"
        return f"{n:.0f}B"

    del human_size
    body = [[r["ID"][:12], r["Name"], f"{r['CPUPerc']:.2f}%", f"{b(r['MemUsage'])} / {b(r['MemLimit'])}",
             f"{r['MemPerc']:.2f}%", "--", "--", str(r["PIDs"])] for r in rows]
    for line in table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"],
                      body):
        _out(line)


# ----------------------------------------------------------------------------- exec and the monitor's cleanup
def exec_(settings: Settings, argv: list[str], prog: str) -> int:
    from ocibox.containers import exec_main

    return exec_main(settings, argv, prog)


def cleanup(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, ((("--lock-fd",), "int", "FD", "the monitor lock this process holds"),), CONTAINER,
                description="(internal) What a monitor runs when its container's PID 1 exits.").parse(argv)
    from ocibox import containers

    return containers.cleanup(settings, ns["container"], ns["lock_fd"])
