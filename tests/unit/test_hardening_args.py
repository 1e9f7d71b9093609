"""The hardening flags at the edge: --security-opt, --device, --ulimit, --privileged."""

from __future__ import annotations

import resource

import pytest

from ocibox.errors import UsageError
from ocibox.run import _hardening as hd
from ocibox.run._flags import format_help, parse_args


def parse(argv: list[str]) -> hd.Hardening:
    ns = parse_args([*argv, "img"])
    return hd.from_args(ns["security_opt"], ns["device"], ns["ulimit"], ns["privileged"])


def test_defaults() -> None:
    assert parse([]) == hd.Hardening(False, None, (), ())


def test_flags() -> None:
    h = parse(["--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges",
               "--device", "/dev/null:/dev/n:r", "--ulimit", "nofile=10:20", "--ulimit", "nofile=30:40",
               "--ulimit", "core=0", "--privileged"])
    assert h.privileged and h.seccomp == "unconfined"
    assert [(d.container_path, d.access) for d in h.devices] == [("/dev/n", "r")]
    assert [(u.resource, u.soft, u.hard) for u in h.ulimits] == [(resource.RLIMIT_NOFILE, 30, 40), (resource.RLIMIT_CORE, 0, 0)]
    assert parse(["--security-opt", "seccomp:/p.json"]).seccomp == "/p.json"  # docker's old ":" form


@pytest.mark.parametrize("opt", ["seccomp=", "seccomp", "label=type:x", "systempaths=unconfined", "bogus"])
def test_unsupported_security_opts(opt: str) -> None:
    with pytest.raises(UsageError, match=f"--security-opt {opt}: unsupported"):
        parse(["--security-opt", opt])


def test_privileged_help_says_what_it_lifts() -> None:
    text = " ".join(format_help().split())
    assert "no seccomp filter" in text and "every device" in text and "every capability" in text


def test_bounded_caps_are_those_of_this_process() -> None:
    with open("/proc/self/status") as f:
        bnd = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    names = {"CHOWN": 0, "SYS_ADMIN": 21, "SYS_RESOURCE": 24}
    assert hd.bounded_caps(names) == {n for n, i in names.items() if bnd >> i & 1}
