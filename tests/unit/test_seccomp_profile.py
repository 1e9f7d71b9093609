"""docker's default seccomp profile as a table, and docker's JSON profile format (pure logic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocibox.errors import UsageError
from ocibox.linux import seccomp as scmp
from ocibox.run import _seccomp as sc

PODMAN_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
               "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}
ALLOW = scmp.SCMP_ACT_ALLOW
EPERM = scmp.scmp_act_errno(1)


def allowed(p: sc.Profile) -> dict[str, list[sc.Rule]]:
    out: dict[str, list[sc.Rule]] = {}
    for r in p.rules:
        for n in r.names:
            out.setdefault(n, []).append(r)
    return out


def test_default_profile_podman_caps_on_amd64() -> None:
    p = sc.default_profile(PODMAN_CAPS, machine="x86_64", release="6.1.0-13-amd64")
    assert p.default_action == EPERM
    assert p.arches == ("x86_64", "x86", "x32")
    a = allowed(p)
    for name in ("read", "execve", "openat", "futex", "clone", "arch_prctl", "modify_ldt", "chroot", "ptrace"):
        assert name in a, name
    for name in ("mount", "umount2", "unshare", "setns", "bpf", "keyctl", "kexec_load", "open_by_handle_at",
                 "reboot", "init_module", "perf_event_open", "add_key", "userfaultfd", "iopl", "syslog"):
        assert name not in a, name
    # clone only with an argument mask refusing the namespace flags; clone3 answers ENOSYS
    (clone,) = a["clone"]
    assert clone.args == (sc.ArgCmp(0, scmp.SCMP_CMP_MASKED_EQ, 0x7E020000, 0),)
    assert [r.action for r in a["clone3"]] == [scmp.scmp_act_errno(38)]
    assert sorted(r.args[0].value for r in a["personality"]) == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert a["socket"][0].args == (sc.ArgCmp(0, scmp.SCMP_CMP_NE, 40),)
    assert "cacheflush" not in a and "s390_runtime_instr" not in a


def test_cap_gated_groups() -> None:
    p = allowed(sc.default_profile(PODMAN_CAPS | {"SYS_ADMIN", "sys_ptrace"}, machine="x86_64"))
    for name in ("mount", "unshare", "setns", "clone3", "bpf", "kcmp", "pidfd_getfd"):
        assert ALLOW in [r.action for r in p[name]], name
    assert all(not r.args for r in p["clone"])  # unconditional with CAP_SYS_ADMIN
    assert scmp.scmp_act_errno(38) not in [r.action for r in p["clone3"]]
    # no chroot without CAP_SYS_CHROOT
    assert "chroot" not in allowed(sc.default_profile(set(), machine="x86_64"))


def test_old_kernel_and_other_arch() -> None:
    p = allowed(sc.default_profile(set(), machine="x86_64", release="4.4.0"))
    assert "ptrace" not in p
    arm = sc.default_profile(set(), machine="aarch64", release="6.1.0")
    assert arm.arches == ("aarch64", "arm")
    a = allowed(arm)
    assert "cacheflush" in a and "arch_prctl" not in a and "modify_ldt" not in a


DOC = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["kill"], "action": "SCMP_ACT_LOG", "comment": "ignored"},
    ],
}


def test_docker_json_profile() -> None:
    p = sc.parse_profile(json.dumps(DOC), {"CAP_KILL"}, source="p.json", machine="x86_64", release="6.1")
    assert p.default_action == EPERM and p.source == "p.json"
    assert p.arches == ("x86_64", "x86", "x32")
    a = allowed(p)
    assert a["mkdir"][0].action == scmp.scmp_act_errno(13)
    assert "mount" not in a and "clone" in a and "arch_prctl" in a and "ptrace" in a
    assert a["kill"][0].action == scmp.SCMP_ACT_LOG
    p2 = allowed(sc.parse_profile(json.dumps(DOC), {"CAP_SYS_ADMIN"}, machine="aarch64", release="4.4"))
    assert "mount" in p2 and "clone" not in p2 and "arch_prctl" not in p2 and "ptrace" not in p2


def test_json_architectures_list_and_defaults() -> None:
    doc = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    p = sc.parse_profile(json.dumps(doc), set(), machine="x86_64")
    assert p.default_action == ALLOW and p.arches == ("x86_64",)
    assert p.rules[0].action == EPERM  # SCMP_ACT_ERRNO without errnoRet is EPERM, as in runc


@pytest.mark.parametrize(("doc", "what"), [
    ("{", "Expecting"),
    ("[]", "JSON object"),
    ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "listener"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}, "SCMP_ARCH_"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "both"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}, "syscalls[0]: no syscall"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "name": "b", "action": "SCMP_ACT_LOG"}]},
     "both 'name'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "args[0]: index"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 0, "value": 1, "op": "EQ"}]}]},
     "unknown op"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "errnoRet"),
])
def test_bad_profiles_name_the_field(doc: object, what: str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(UsageError) as ei:
        sc.parse_profile(text, set(), source="/x/p.json")
    assert "/x/p.json" in str(ei.value) and what in str(ei.value)


def test_profile_from_option(tmp_path: Path) -> None:
    assert sc.profile_from_option("unconfined", set()) is None
    d = sc.profile_from_option(None, {"CAP_KILL"})
    assert d is not None and d.source == "default"
    f = tmp_path / "p.json"
    f.write_text(json.dumps(DOC))
    p = sc.profile_from_option(str(f), set())
    assert p is not None and p.source == str(f)
    with pytest.raises(UsageError, match=r"missing\.json.*unconfined"):
        sc.profile_from_option(str(tmp_path / "missing.json"), set())
