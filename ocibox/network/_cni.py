"""A small CNI 1.0 runtime: runs the plugins of a network configuration list as the spec prescribes.

Each plugin is executed with ``CNI_COMMAND`` (ADD, DEL, CHECK), ``CNI_CONTAINERID``, ``CNI_NETNS``,
``CNI_IFNAME`` and ``CNI_PATH`` in its environment and its configuration on stdin: the plugin's entry
of the list with the list's ``name`` and ``cniVersion``, ``runtimeConfig`` holding the values of the
capabilities it declares (portMappings, ips, mac), and ``prevResult``. ADD runs the list in order and
chains each plugin's result into the next one's ``prevResult``; DEL and CHECK get the cached result of
the ADD as ``prevResult`` (DEL may go without it) and DEL runs the list in reverse. A plugin reports
failure with a non-zero exit and ``{"code", "msg", "details"}`` on stdout.

``on_step`` lets the caller save the result after each plugin of an ADD: if ocibox dies in the middle,
the DEL that tidies up gets the most complete ``prevResult`` there is (the firewall plugin needs it to
know which rules to remove).
"""

from __future__ import annotations

import json
import os

from ocibox.errors import NetworkError
from ocibox.network._conflist import plugin_types

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from typing import Any

DEFAULT_PATH = ("/usr/lib/cni", "/usr/libexec/cni", "/opt/cni/bin")
PACKAGE = "containernetworking-plugins"
#: Debian packages of plugins that are not in containernetworking-plugins
PACKAGES = {"dnsname": "golang-github-containernetworking-plugin-dnsname"}
TIMEOUT = 60


def cni_path() -> tuple[str, ...]:
    """Where plugins are looked up: ``$OCIBOX_CNI_PATH`` (colon-separated), else Debian's
    /usr/lib/cni, /usr/libexec/cni and the upstream /opt/cni/bin."""
    env = os.environ.get("OCIBOX_CNI_PATH")
    if env:
        return tuple(p for p in env.split(":") if p)
    return DEFAULT_PATH


def find_plugin(kind: str, path: tuple[str, ...]) -> str | None:
    if "/" in kind or not kind:
        return None
    for d in path:
        f = os.path.join(d, kind)
        if os.access(f, os.X_OK) and os.path.isfile(f):
            return f
    return None


def package_of(kind: str) -> str:
    return PACKAGES.get(kind, PACKAGE)


def check_plugins(conflist: dict[str, Any], path: tuple[str, ...] | None = None) -> None:
    """``NetworkError`` naming the first plugin of ``conflist`` missing from the CNI path and its
    Debian package."""
    path = path or cni_path()
    for kind in plugin_types(conflist):
        if find_plugin(kind, path) is None:
            raise NetworkError(f"CNI plugin {kind!r} of network {conflist.get('name')!r} is missing from "
                               f"{':'.join(path)}: install the Debian package {package_of(kind)}")


def plugin_config(conflist: dict[str, Any], plugin: dict[str, Any], runtime_config: dict[str, Any] | None,
                  prev_result: dict[str, Any] | None) -> dict[str, Any]:
    """The stdin of one plugin: its entry with the list's name and cniVersion, the runtimeConfig of
    the capabilities it declares (and only those with a value), and prevResult when there is one."""
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist.get("cniVersion", "1.0.0")
    caps = plugin.get("capabilities")
    conf.pop("runtimeConfig", None)
    if isinstance(caps, dict) and runtime_config:
        rc = {k: v for k, v in runtime_config.items() if caps.get(k) and v not in (None, "", [], {})}
        if rc:
            conf["runtimeConfig"] = rc
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def _error_text(kind: str, command: str, network: str, proc: subprocess.CompletedProcess[bytes]) -> str:
    msg = ""
    try:
        err = json.loads(proc.stdout)
        if isinstance(err, dict):
            msg = str(err.get("msg") or "")
            if err.get("details"):
                msg += f" ({err['details']})"
    except ValueError:
        pass
    if not msg:
        msg = (proc.stderr or proc.stdout).decode(errors="replace").strip() or f"exit status {proc.returncode}"
    msg = " ".join(msg.split())
    if len(msg) > 400:
        msg = msg[:400] + "..."
    return (f"CNI plugin {kind!r} failed to {command} on network {network!r}: {msg}; if the plugin itself is "
            f"broken, reinstall the Debian package {package_of(kind)}")


def exec_plugin(command: str, conf: dict[str, Any], *, container_id: str, netns: str, ifname: str,
                path: tuple[str, ...], args: str = "") -> dict[str, Any] | None:
    """Run one plugin; its parsed result (ADD), None (DEL, CHECK); ``NetworkError`` on failure."""
    kind = conf["type"]
    binary = find_plugin(kind, path)
    if binary is None:
        raise NetworkError(f"CNI plugin {kind!r} of network {conf.get('name')!r} is missing from "
                           f"{':'.join(path)}: install the Debian package {package_of(kind)}")
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
           "CNI_PATH": ":".join(path), "PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"}
    if args:
        env["CNI_ARGS"] = args
    import subprocess

    try:
        proc = subprocess.run([binary], input=json.dumps(conf).encode(), env=env, capture_output=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"CNI plugin {kind!r} did not finish {command} on network {conf.get('name')!r} within "
                           f"{TIMEOUT} s") from None
    except OSError as e:
        raise NetworkError(f"CNI plugin {binary} cannot be run ({e.strerror}): reinstall the Debian package "
                           f"{package_of(kind)}") from None
    if proc.returncode != 0:
        raise NetworkError(_error_text(kind, command, str(conf.get("name")), proc))
    if command != "ADD":
        return None
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise NetworkError(f"CNI plugin {kind!r} answered ADD on network {conf.get('name')!r} with no result "
                           f"JSON: reinstall the Debian package {package_of(kind)}")
    return result


def add(conflist: dict[str, Any], *, container_id: str, netns: str, ifname: str,
        runtime_config: dict[str, Any] | None = None, path: tuple[str, ...] | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """ADD of a whole list; the last plugin's result. On failure the caller runs ``delete`` (the spec:
    DEL of every plugin of the list, even those ADD never reached)."""
    path = path or cni_path()
    result: dict[str, Any] | None = None
    for plugin in conflist["plugins"]:
        conf = plugin_config(conflist, plugin, runtime_config, result)
        out = exec_plugin("ADD", conf, container_id=container_id, netns=netns, ifname=ifname, path=path)
        assert out is not None
        result = out
        if on_step is not None:
            on_step(result)
    if result is None:
        raise NetworkError(f"network {conflist.get('name')!r} has no plugins")
    return result


def delete(conflist: dict[str, Any], *, container_id: str, netns: str, ifname: str,
           runtime_config: dict[str, Any] | None = None, prev_result: dict[str, Any] | None = None,
           path: tuple[str, ...] | None = None) -> None:
    """DEL of a whole list, in reverse, each plugin given the cached ADD result. Stops at the first
    failure, as the spec says, and raises it."""
    path = path or cni_path()
    for plugin in reversed(conflist["plugins"]):
        conf = plugin_config(conflist, plugin, runtime_config, prev_result)
        exec_plugin("DEL", conf, container_id=container_id, netns=netns, ifname=ifname, path=path)


def check(conflist: dict[str, Any], *, container_id: str, netns: str, ifname: str,
          runtime_config: dict[str, Any] | None, prev_result: dict[str, Any],
          path: tuple[str, ...] | None = None) -> None:
    """CHECK of a whole list, in order, each plugin given the cached ADD result (skipped when the list
    says ``disableCheck``)."""
    if str(conflist.get("disableCheck", "")).lower() == "true":
        return
    path = path or cni_path()
    for plugin in conflist["plugins"]:
        conf = plugin_config(conflist, plugin, runtime_config, prev_result)
        exec_plugin("CHECK", conf, container_id=container_id, netns=netns, ifname=ifname, path=path)
