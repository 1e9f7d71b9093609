"""The network verbs (network create, ls, inspect, rm, prune) and ``port``: parse, call ``ocibox.network``,
print as docker does. A failure of the operation is docker's 1, a bad option 125."""

from __future__ import annotations

import sys

from ocibox.cli import _out
from ocibox.cli._containers import _OperationError, _store
from ocibox.errors import OciboxError, UsageError
from ocibox.options import Parser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocibox.settings import Settings

NETWORKS = (("network", "NETWORK...", ""),)


def _repaired(settings: Settings) -> None:
    """Dead containers' interfaces gone first: they must not keep a network in use."""
    from ocibox import containers

    containers.repair_all(_store(settings))


def create(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("-d", "--driver"), "str", "DRIVER", "bridge (the only driver)"),
        (("--subnet",), "str", "CIDR", "the network's IPv4 subnet (default: the first free /24 of 10.100.0.0/14)"),
        (("--gateway",), "str", "IPV4", "the bridge's address (default: the subnet's first)"),
        (("--internal",), "bool", "", "no route out of the network (containers reach only each other)"),
        (("--label",), "list", "KEY=VALUE", "a label on the network"),
        (("--disable-dns",), "bool", "", "no names for the containers on the network"),
    ), (("name", "NAME", ""),), description="Create a network.").parse(argv)
    if ns["driver"] not in (None, "", "bridge"):
        raise UsageError(f"{prog}: driver {ns['driver']!r} is not supported; ocibox networks are bridges (-d bridge)")
    labels = []
    for item in ns["label"]:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"{prog}: invalid --label {item!r}: use KEY=VALUE")
        labels.append((key, value))
    from ocibox import network

    # A name or subnet taken is podman's 125 (NetworkError), as every refusal of the network room.
    net = network.create(ns["name"], subnet=ns["subnet"] or "", gateway=ns["gateway"] or "",
                         internal=ns["internal"], labels=labels, dns=not ns["disable_dns"])
    _out(net.id)


def ls(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (
        (("-q", "--quiet"), "bool", "", "only network ids"),
        (("--no-trunc",), "bool", "", "do not truncate ids"),
        (("-f", "--filter"), "list", "KEY=VALUE", "name=, id=, label=KEY[=VALUE]"),
        (("--format",), "str", "FORMAT", "json, or a Go template like '{{.Name}}'"),
    ), description="List networks.").parse(argv)
    from ocibox import network

    rows = []
    for net in network.ls(settings):
        r = network.ls_row(net)
        if ns["no_trunc"]:
            r["ID"] = net.id
        if all(_matches(r, f, prog) for f in ns["filter"]):
            rows.append(r)
    if ns["quiet"]:
        for r in rows:
            _out(r["ID"])
        return
    if ns["format"]:
        from ocibox.cli._containers import _format

        for line in _format(rows, ns["format"]):
            _out(line)
        return
    from ocibox.cli._render import table

    for line in table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                      [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows]):
        _out(line)


def _matches(row: dict[str, Any], item: str, prog: str) -> bool:
    key, eq, value = item.partition("=")
    if not eq or key not in ("name", "id", "label", "driver"):
        raise UsageError(f"{prog}: invalid --filter {item!r}: use name=, id=, label=KEY[=VALUE] or driver=")
    if key == "name":
        return value in str(row["Name"])
    if key == "id":
        return str(row["ID"]).startswith(value)
    if key == "driver":
        return bool(value == row["Driver"])
    labels = dict(p.split("=", 1) if "=" in p else (p, "") for p in row["Labels"].split(",") if p)
    k, has_value, v = value.partition("=")
    return k in labels and (not has_value or labels[k] == v)


def inspect(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, ((("-f", "--format"), "str", "FORMAT", "a Go template's simple cases ({{.IPAM}})"),),
                NETWORKS, description="Display detailed information on one or more networks.").parse(argv)
    from ocibox import network
    from ocibox.cli._containers import inspect_each

    _repaired(settings)
    return inspect_each(ns["network"], lambda name: network.inspect(settings, [name]), ns["format"])


def rm(settings: Settings, argv: list[str], prog: str) -> int:
    ns = Parser(prog, ((("-f", "--force"), "bool", "", "no error for networks that do not exist"),),
                NETWORKS, description="Remove one or more networks.").parse(argv)
    from ocibox import network

    _repaired(settings)
    failed = 0
    for name in ns["network"]:
        try:
            for gone in network.rm(settings, [name], ignore_missing=ns["force"]):
                _out(gone)
        except OciboxError as e:
            sys.stderr.write(f"Error: {e}\n")
            failed = e.exit_code  # in use, not found: podman's 125
    return failed


def prune(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, ((("-f", "--force"), "bool", "", "do not ask"),),
                description="Remove all networks no container uses.").parse(argv)
    if not ns["force"] and sys.stdin.isatty():
        sys.stderr.write("WARNING! This will remove all custom networks not used by at least one container.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return
    from ocibox import network

    _repaired(settings)
    gone = network.prune(settings)
    if gone:
        _out("Deleted Networks:")
        for name in gone:
            _out(name)


def port(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (), (("container", "CONTAINER", ""), ("private", "[PRIVATE_PORT[/PROTO]]", "")),
                description="List port mappings or a specific mapping for the container.").parse(argv)
    from ocibox import containers

    store = _store(settings)
    try:
        rec = containers.find(store, ns["container"])
    except OciboxError as e:
        raise _OperationError(str(e)) from None
    att = containers.network_view(store, containers.repair(store, rec))
    private = ns["private"] or ""
    from ocibox import network

    maps = network.ports(att, private) if att is not None else []
    if private and not maps:
        raise _OperationError(f"no public port '{private if '/' in private else private + '/tcp'}' published "
                              f"for {ns['container']}")
    for m in maps:
        _out(str(m).split(" -> ")[1] if private else str(m))
