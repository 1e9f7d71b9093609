"""The network room: containers on CNI bridge networks, published ports, names on user networks.

It calls the CNI reference plugins (Debian's containernetworking-plugins: bridge, host-local, portmap,
firewall, tuning) through a small CNI 1.0 runtime of its own (``_cni``), and aardvark-dns for names.
It imports nothing above the store's level and is never imported by ``ocibox run --network none``.
Pure parsing (``_parse``, ``_conflist``, ``_text``'s builders) is apart from I/O.

Public surface (loaded lazily)::

    records      NetworkRequest PortMapping Network Endpoint Attachments DEFAULT_NETWORK
    parsing      build_request(network=, publish=, publish_all_ports=, exposed_ports=, dns=, dns_search=,
                 dns_options=, add_host=, ip=, mac=, hostname=, aliases=, warn=) -> NetworkRequest
                 parse_publish(text) publish_all(exposed_ports) parse_add_host(text) parse_network(values)
    a container  check(settings, request, cid, name="") -> NetworkRequest   before anything is made
                 new_netns(settings, cid) -> path                        /run/netns/ocibox-<id>
                 attach(settings, request, cid, name, netns) -> Attachments   CNI ADD + names
                 detach(settings, cid, attachments=None, background=False)   CNI DEL + names + netns
                 repair(settings, live_ids, still_live=) -> [ids]        detach of dead containers
                 recorded(settings) -> {ids}                             containers with network state
                 attachments(settings, cid) ports(attachments, private="") cni_check(settings, cid)
                 resolv_conf(request, attachments=None) hosts(request, attachments, hostname, name="")
                 remove_netns(path)
    without root UserNet(request, cdir, runtime_dir): slirp4netns or pasta (USER_MODES, DEFAULT_USER_MODE)
                 for one container; stop_usernet(cdir), usernet_ports(cdir) from its directory
    networks     create(name, subnet=, gateway=, internal=, labels=, dns=) -> Network
                 ls(settings) -> [Network]  ls_row(net)  inspect(settings, names) -> [docker JSON]
                 rm(settings, names) -> [names]  prune(settings) -> [names]  load(name)
                 ensure_default()  containers_on(settings, name)  config_dir()

Where things are: see ``_paths``. Errors: ``UsageError`` for malformed flags, ``NetworkError`` for
the rest (both exit 125), each one line.
"""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocibox.network._attach import (
        attach,
        attachments,
        check,
        cni_check,
        detach,
        new_netns,
        ports,
        repair,
    )
    from ocibox.network._model import (
        DEFAULT_NETWORK,
        USER_MODES,
        Attachments,
        Endpoint,
        Network,
        NetworkRequest,
        PortMapping,
    )
    from ocibox.network._netns import remove_netns
    from ocibox.network._networks import (
        containers_on,
        create,
        ensure_default,
        inspect,
        load,
        ls,
        ls_row,
        prune,
        rm,
    )
    from ocibox.network._parse import (
        build_request,
        parse_add_host,
        parse_network,
        parse_publish,
        publish_all,
    )
    from ocibox.network._paths import config_dir, recorded
    from ocibox.network._text import hosts, resolv_conf
    from ocibox.network._usernet import DEFAULT_USER_MODE, UserNet, stop_usernet, usernet_ports

_TABLE = {
    **dict.fromkeys(("attach", "attachments", "check", "cni_check", "detach", "new_netns", "ports", "repair"),
                    "_attach"),
    **dict.fromkeys(("DEFAULT_NETWORK", "USER_MODES", "Attachments", "Endpoint", "Network", "NetworkRequest",
                     "PortMapping"), "_model"),
    "remove_netns": "_netns",
    **dict.fromkeys(("containers_on", "create", "ensure_default", "inspect", "load", "ls", "ls_row", "prune", "rm"),
                    "_networks"),
    **dict.fromkeys(("build_request", "parse_add_host", "parse_network", "parse_publish", "publish_all"), "_parse"),
    **dict.fromkeys(("config_dir", "recorded"), "_paths"),
    **dict.fromkeys(("UserNet", "DEFAULT_USER_MODE", "stop_usernet", "usernet_ports"), "_usernet"),
    **dict.fromkeys(("hosts", "resolv_conf"), "_text"),
}

__getattr__ = lazy_getattr(__name__, _TABLE)

__all__ = [
    "DEFAULT_NETWORK",
    "DEFAULT_USER_MODE",
    "USER_MODES",
    "Attachments",
    "Endpoint",
    "Network",
    "NetworkRequest",
    "PortMapping",
    "UserNet",
    "attach",
    "attachments",
    "build_request",
    "check",
    "cni_check",
    "config_dir",
    "containers_on",
    "create",
    "detach",
    "ensure_default",
    "hosts",
    "inspect",
    "load",
    "ls",
    "ls_row",
    "new_netns",
    "parse_add_host",
    "parse_network",
    "parse_publish",
    "ports",
    "prune",
    "publish_all",
    "recorded",
    "remove_netns",
    "repair",
    "resolv_conf",
    "rm",
    "stop_usernet",
    "usernet_ports",
]
