"""--device and --ulimit parsing; the default device allow list (runc's AllowedDevices)."""

from __future__ import annotations

import os
import resource

import pytest

from ocibox import cgroups
from ocibox.errors import RuntimeSetupError, UsageError
from ocibox.run import _devices as dv
from ocibox.run import _rlimits as rl


def test_default_allow_list_rules() -> None:
    rules = [d.rule() for d in dv.default_devices()]
    assert rules == ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                     "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"]
    assert "c 5:1 rwm" in [d.rule() for d in dv.default_devices(tty=True)]
    assert not any(d.type == "b" and "r" in d.access for d in dv.default_devices(tty=True))


@pytest.mark.parametrize(("opt", "ctr", "access"), [
    ("/dev/null", "/dev/null", "rwm"),
    ("/dev/null:/dev/mynull", "/dev/mynull", "rwm"),
    ("/dev/null:r", "/dev/null", "r"),
    ("/dev/null:/dev/x:rw", "/dev/x", "rw"),
    ("/dev/null:/dev/x/./y:m", "/dev/x/y", "m"),
])
def test_parse_device_option(opt: str, ctr: str, access: str) -> None:
    spec = dv.parse_device_option(opt)
    st = os.stat("/dev/null")
    assert (spec.host_path, spec.container_path, spec.type, spec.major, spec.minor, spec.access) == (
        "/dev/null", ctr, "c", os.major(st.st_rdev), os.minor(st.st_rdev), access)
    assert spec.device.rule() == f"c 1:3 {access}"


@pytest.mark.parametrize(("opt", "what"), [
    ("", "expected HOST"),
    ("/dev/null:/a:rw:x", "expected HOST"),
    ("/dev/null:/dev/x:rwx", "combination of r, w and m"),
    ("/dev/null:/dev/x:rrw", "combination of r, w and m"),
    ("dev/null", "absolute"),
    ("/dev/null:dev/x", "absolute"),
    ("/dev/null:/dev", "cannot be a device path"),
    ("/dev/null:/dev/../etc/x", "cannot be a device path"),
    ("/dev/no-such-device", "No such file"),
    ("/etc/hostname", "not a character or block device"),
])
def test_bad_device_options(opt: str, what: str) -> None:
    with pytest.raises(UsageError) as ei:
        dv.parse_device_option(opt)
    assert what in str(ei.value) and opt in str(ei.value)


@pytest.mark.parametrize(("opt", "want"), [
    ("nofile=1024:2048", (resource.RLIMIT_NOFILE, 1024, 2048)),
    ("nofile=1024", (resource.RLIMIT_NOFILE, 1024, 1024)),
    ("nproc=10:unlimited", (resource.RLIMIT_NPROC, 10, resource.RLIM_INFINITY)),
    ("core=-1", (resource.RLIMIT_CORE, resource.RLIM_INFINITY, resource.RLIM_INFINITY)),
    ("locks=5:6", (10, 5, 6)),
])
def test_parse_ulimit(opt: str, want: tuple[int, int, int]) -> None:
    u = rl.parse_ulimit(opt)
    assert (u.resource, u.soft, u.hard) == want
    assert u.name == opt.split("=")[0]


@pytest.mark.parametrize(("opt", "what"), [
    ("nofile", "NAME=SOFT"), ("nofile=", "NAME=SOFT"), ("files=1", "unknown limit 'files'"),
    ("nofile=a:b", "not a number"), ("nofile=2048:1024", "above the hard limit"),
    ("nofile=unlimited:5", "above the hard limit"), ("nofile=1:-5", "not a number"),
])
def test_bad_ulimits(opt: str, what: str) -> None:
    with pytest.raises(UsageError, match=what):
        rl.parse_ulimit(opt)


def test_raising_past_the_hard_limit_names_it() -> None:
    """This host's processes lack CAP_SYS_RESOURCE; where a process has it there is nothing to refuse."""
    if rl._has_cap_sys_resource():
        pytest.skip("this process holds CAP_SYS_RESOURCE: raising the hard limit is allowed")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    u = rl.parse_ulimit(f"nofile={hard + 1}:{hard + 1}")
    with pytest.raises(RuntimeSetupError, match=f"hard nofile limit here is {hard}.*CAP_SYS_RESOURCE.*at most {hard}"):
        rl.check_ulimits([u])
    pid = os.fork()
    if pid == 0:  # apply in a child: the limits of the test process stay as they are
        try:
            rl.apply_ulimits([u])
            os._exit(1)
        except RuntimeSetupError as e:
            os._exit(0 if f"at most {hard}" in str(e) else 2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    rl.check_ulimits([rl.parse_ulimit(f"nofile=100:{hard}")])  # at the limit is fine


def test_apply_lowers_only_what_is_asked() -> None:
    before = {r: resource.getrlimit(r) for r in (resource.RLIMIT_NPROC, resource.RLIMIT_CORE)}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        rl.apply_ulimits([rl.parse_ulimit("nofile=64:128")])
        after = [resource.getrlimit(resource.RLIMIT_NOFILE), *(resource.getrlimit(x) for x in before)]
        os.write(w, repr(after).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(w)
    got = os.read(r, 4096).decode()
    assert got == repr([(64, 128), *before.values()])


def test_bpf_program_shape() -> None:
    """6 loads, per rule its comparisons + return 1, then return 0; jumps land on the next rule."""
    import struct

    prog = cgroups.bpf_device_program([cgroups.Device("c", 1, 3, "rwm"), cgroups.Device("b", cgroups.ANY, cgroups.ANY, "m")])
    insns = [struct.unpack("<BBhi", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert len(insns) == 6 + 5 + 6 + 2
    rule1 = insns[6:11]
    assert [(c, off, imm) for c, _, off, imm in rule1] == [
        (0x55, 4, 2), (0x55, 3, 1), (0x55, 2, 3), (0xB7, 0, 1), (0x95, 0, 0)]
    rule2 = insns[11:17]
    assert [(c, off, imm) for c, _, off, imm in rule2] == [
        (0x55, 5, 1), (0xBC, 0, 0), (0x54, 0, 1), (0x5D, 2, 0), (0xB7, 0, 1), (0x95, 0, 0)]
    assert insns[-2:] == [(0xB7, 0, 0, 0), (0x95, 0, 0, 0)]
