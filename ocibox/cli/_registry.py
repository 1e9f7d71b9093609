"""The registry verbs: ``pull``, ``login``, ``logout``. ``pull`` is on a fast path too: nothing here
imports the registry client before the options are parsed."""

from __future__ import annotations

from ocibox.cli import _out, _with
from ocibox.options import Parser

TYPE_CHECKING = False  # typing is not imported on the pull path (5 ms)
if TYPE_CHECKING:
    from ocibox.settings import Settings

CERT_DIR_HELP = ("directory of the registry's CA certificates (*.crt) and client certificates (*.cert with "
                 "*.key); default: /etc/containers/certs.d/HOST[:PORT] or /etc/docker/certs.d/HOST[:PORT]")
SERVER = (("server", "SERVER", "registry host[:port]"),)

PULL = (
    (("--platform",), "str", "OS/ARCH[/VARIANT]",
     "the platform to pull from a multi-platform image (default: this host's)"),
    (("-q", "--quiet"), "bool", "", "print only the image digest"),
    (("--cert-dir",), "str", "DIR", CERT_DIR_HELP),
)
LOGIN = (
    (("-u", "--username"), "str", "USER", "user name (asked on a terminal when not given)"),
    (("-p", "--password"), "str", "PASSWORD", "password (asked on a terminal when not given)"),
    (("--password-stdin",), "bool", "", "read the password from stdin"),
    (("--cert-dir",), "str", "DIR", CERT_DIR_HELP),
)


def pull(settings: Settings, argv: list[str], prog: str = "ocibox pull") -> None:
    """``ocibox pull [OPTIONS] IMAGE`` (docker's and podman's options)."""
    ns = Parser(prog, PULL, (("image", "IMAGE", ""),),
                description="Pull an image (and all its layers, unpacked) from a registry.").parse(argv)
    from ocibox import puller
    from ocibox.image import Platform
    from ocibox.reference import Reference

    ref = Reference.parse(ns["image"])
    plat = Platform.parse(ns["platform"]) if ns["platform"] else None
    s = _with(settings, quiet=ns["quiet"] or settings.quiet, cert_dir=ns["cert_dir"] or settings.cert_dir)
    result = puller.pull(s, ref, platform=plat)
    if s.quiet:
        _out(str(result.pinned))


def login(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, LOGIN, SERVER, description="Log in to a registry; credentials go to "
                "~/.docker/config.json (mode 0600).", defaults={"username": None, "password": None}).parse(argv)
    from ocibox import puller

    s = _with(settings, cert_dir=ns["cert_dir"]) if ns["cert_dir"] else settings
    puller.login(s, ns["server"], username=ns["username"], password=ns["password"],
                 password_stdin=ns["password_stdin"])
    _out("Login Succeeded")


def logout(settings: Settings, argv: list[str], prog: str) -> None:
    ns = Parser(prog, (), SERVER, description="Remove the credentials stored for a registry.").parse(argv)
    from ocibox import puller

    puller.logout(settings, ns["server"])
    _out(f"Removed login credentials for {ns['server']}")
