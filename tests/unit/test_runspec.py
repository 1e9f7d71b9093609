"""RunSpec.from_image: docker's rules for entrypoint/cmd/env/user/workdir/limits, and flag parsing."""

from __future__ import annotations

import pytest

from ocibox.digest import Digest
from ocibox.errors import UsageError
from ocibox.image import ImageConfig, Platform
from ocibox.run._flags import format_help, parse_args, parse_run_args, parse_tmpfs, parse_volume
from ocibox.run._spec import (
    DEFAULT_CAPS,
    DEFAULT_PATH,
    RunSpec,
    capabilities,
    merge_env,
    resolve_user,
)
from ocibox.units import parse_size

D = Digest.parse("sha256:" + "0" * 64)


def cfg(**kw: object) -> ImageConfig:
    return ImageConfig(platform=Platform("linux", "amd64"), diff_ids=(D,), **kw)  # type: ignore[arg-type]


def spec(config: ImageConfig, *argv: str, environ: dict[str, str] | None = None) -> RunSpec:
    return RunSpec.from_image(config, parse_run_args([*argv], environ or {}), container_id="c0ffee" * 10)


# (image entrypoint, image cmd, run flags before IMAGE, COMMAND, expected argv) -- docker's table
ARGV_TABLE = [
    (None, ("/bin/sh",), [], [], ("/bin/sh",)),
    (None, ("/bin/sh",), [], ["echo", "hi"], ("echo", "hi")),
    (("/ep",), ("a", "b"), [], [], ("/ep", "a", "b")),
    (("/ep",), ("a", "b"), [], ["x"], ("/ep", "x")),
    (("/ep",), ("a",), ["--entrypoint", "/other"], [], ("/other",)),  # --entrypoint clears Cmd
    (("/ep",), ("a",), ["--entrypoint", "/other"], ["y"], ("/other", "y")),
    (("/ep",), ("a",), ["--entrypoint", ""], ["ls", "-l"], ("ls", "-l")),  # '' clears Entrypoint
    (None, None, ["--entrypoint", "ls -l"], [], ("ls -l",)),  # one argument, never split
    (None, ("sh",), [], ["ls", "-e", "--rm"], ("ls", "-e", "--rm")),  # flags after IMAGE are the command's
]


@pytest.mark.parametrize("ep,cmd,flags,command,want", ARGV_TABLE)
def test_argv_table(ep, cmd, flags, command, want) -> None:
    assert spec(cfg(entrypoint=ep, cmd=cmd), *flags, "img", *command).argv == want


def test_no_command_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no command"):
        spec(cfg(), "img")
    with pytest.raises(UsageError, match="no command"):
        spec(cfg(cmd=("sh",)), "--entrypoint", "", "img")


def test_env_order_and_replacement() -> None:
    c = cfg(env=("PATH=/img/bin", "A=image", "B=image"))
    s = spec(c, "-e", "B=flag", "-e", "C=1", "-e", "FROMHOST", "-e", "MISSING", "img", "true",
             environ={"FROMHOST": "h"})
    assert s.env == ("PATH=/img/bin", "HOSTNAME=c0ffeec0ffee", "A=image", "B=flag", "C=1", "FROMHOST=h")
    assert spec(cfg(cmd=("x",)), "-t", "img").env == (f"PATH={DEFAULT_PATH}", "HOSTNAME=c0ffeec0ffee", "TERM=xterm")


def test_env_file_then_e(tmp_path) -> None:
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=file\nB=file\nHOSTVAR\n")
    s = spec(cfg(cmd=("x",), env=("A=img",)), "--env-file", str(f), "-e", "B=flag", "img",
             environ={"HOSTVAR": "v"})
    assert s.env[2:] == ("A=file", "B=flag", "HOSTVAR=v")
    with pytest.raises(UsageError, match="env-file"):
        spec(cfg(cmd=("x",)), "--env-file", str(tmp_path / "nope"), "img")


def test_merge_env_replaces_in_place() -> None:
    assert merge_env(["A=1", "B=2"], ["A=3"], ["C=4", "B=5"]) == ("A=3", "B=5", "C=4")


@pytest.mark.parametrize("image_wd,flag,want", [
    ("", None, "/"), ("/app", None, "/app"), ("/app", "/x/../y", "/y"), ("rel", None, "/rel"),
])
def test_workdir(image_wd, flag, want) -> None:
    flags = ["-w", flag] if flag else []
    assert spec(cfg(cmd=("x",), working_dir=image_wd), *flags, "img").cwd == want


def test_relative_workdir_flag_is_refused() -> None:
    with pytest.raises(UsageError, match="absolute"):
        spec(cfg(cmd=("x",)), "-w", "rel", "img")


def test_user_from_flag_or_image() -> None:
    assert spec(cfg(cmd=("x",), user="app"), "img").user == "app"
    assert spec(cfg(cmd=("x",), user="app"), "-u", "0", "img").user == "0"
    assert spec(cfg(cmd=("x",)), "img").user == ""


PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnohome:x:1001:1001::\n"
GROUP = "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\nwheel:x:10:root\n"


@pytest.mark.parametrize("user,want", [
    ("", (0, 0, (10,), "/root")),
    ("root", (0, 0, (10,), "/root")),
    ("app", (1000, 1000, (2000,), "/home/app")),
    ("1000", (1000, 1000, (2000,), "/home/app")),
    ("app:extra", (1000, 2000, (), "/home/app")),
    ("app:0", (1000, 0, (2000,), "/home/app")),
    ("4242", (4242, 0, (), "/")),  # numeric, not in passwd: gid 0, HOME /
    ("4242:4343", (4242, 4343, (), "/")),
    ("nohome", (1001, 1001, (), "/")),
])
def test_resolve_user(user, want) -> None:
    u = resolve_user(user, PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups, u.home) == want


@pytest.mark.parametrize("user", ["nosuch", "app:nosuchgroup"])
def test_resolve_unknown_names(user) -> None:
    with pytest.raises(UsageError, match="unable to find"):
        resolve_user(user, PASSWD, GROUP)


def test_capabilities() -> None:
    assert capabilities((), ()) == DEFAULT_CAPS
    assert "NET_ADMIN" in capabilities(("cap_net_admin",), ())
    assert "CHOWN" not in capabilities((), ("CHOWN",))
    assert capabilities(("NET_RAW",), ("ALL",)) == {"NET_RAW"}
    assert "SYS_ADMIN" in capabilities(("ALL",), ("KILL",)) and "KILL" not in capabilities(("ALL",), ("KILL",))
    with pytest.raises(UsageError, match="unknown capability"):
        capabilities(("NOPE",), ())


@pytest.mark.parametrize("text,want", [
    ("1024", 1024), ("1k", 1024), ("64m", 64 << 20), ("64M", 64 << 20), ("1g", 1 << 30), ("1.5g", 3 << 29),
    ("512mb", 512 << 20), ("512MiB", 512 << 20), ("10b", 10), ("-1", -1),
])
def test_parse_size(text, want) -> None:
    assert parse_size(text, "x") == want


@pytest.mark.parametrize("text", ["abc", "12q", "", "m"])
def test_parse_size_bad(text) -> None:
    with pytest.raises(UsageError):
        parse_size(text, "--memory")


def test_limits_flags_override_legacy_config() -> None:
    c = cfg(cmd=("x",), memory=100 << 20, memory_swap=200 << 20, cpu_shares=512, cpuset="0")
    s = spec(c, "img")
    assert (s.limits.memory, s.limits.memory_swap, s.limits.cpu_shares, s.limits.cpuset) == (
        100 << 20, 200 << 20, 512, "0")
    s = spec(c, "-m", "300m", "--memory-swap", "-1", "--cpu-shares", "1024", "--cpus", "0.5",
             "--pids-limit", "10", "img")
    assert s.limits.memory == 300 << 20 and s.limits.memory_swap == -1 and s.limits.cpu_shares == 1024
    assert (s.limits.cpu_quota, s.limits.cpu_period, s.limits.pids) == (50_000, 100_000, 10)


@pytest.mark.parametrize("flags,match", [
    (["--memory-swap", "100m"], "needs --memory"),
    (["-m", "100m", "--memory-swap", "50m"], "at least --memory"),
    (["-m", "1m"], "minimum"),
    (["--cpus", "0"], "--cpus"),
    (["--cpus", "lots"], "--cpus"),
    (["--network", "container:"], "name the container"),
    (["--network", "ns:rel"], "must be absolute"),
    (["--network", "none", "-p", "80"], "conflicting options"),
    (["--pull", "sometimes"], "invalid choice"),
    (["--bogus"], "unrecognized"),
])
def test_bad_flags(flags, match) -> None:
    with pytest.raises(UsageError, match=match):
        spec(cfg(cmd=("x",)), *flags, "img")


def test_openshift_labels_warn() -> None:
    c = cfg(cmd=("x",), labels=(("io.openshift.min-cpu", "2"), ("io.openshift.min-memory", "512Mi")))
    assert len(spec(c, "-m", "100m", "--cpus", "1", "img").warnings) == 2
    assert spec(c, "-m", "1g", "img").warnings == ()
    assert spec(c, "img").warnings == ()


def test_volumes_and_tmpfs() -> None:
    v = parse_volume("/host/dir:/data:ro")
    assert (v.kind, v.source, v.target, v.readonly) == ("bind", "/host/dir", "/data", True)
    assert not parse_volume("/h:/c/../d").readonly and parse_volume("/h:/c/../d").target == "/d"
    for bad in ("rel:/c", "/h:rel", "/h", "/h:/c:zz"):
        with pytest.raises(UsageError):
            parse_volume(bad)
    t = parse_tmpfs("/run:size=1m,exec,mode=700")
    assert (t.kind, t.target, t.flags, t.data) == ("tmpfs", "/run", ("nodev", "nosuid"), "size=1m,mode=700")
    with pytest.raises(UsageError):
        parse_tmpfs("/x:bogus")


def test_short_flags_combine_and_help() -> None:
    s = spec(cfg(cmd=("x",)), "-it", "--rm", "-h", "box", "img")
    assert s.tty and s.interactive and s.hostname == "box"
    assert "--memory-swap" in format_help()


def test_docker_parsing_rules() -> None:
    ns = parse_args(["-it", "-eA=1", "-e=B=2", "--env", "C=3", "--env=D=4", "-w/srv", "--rm=false",
                     "--net", "none", "-c", "7", "img", "ls", "-l", "--rm", "--"])
    assert ns["env"] == ["A=1", "B=2", "C=3", "D=4"] and ns["tty"] and ns["interactive"]
    assert (ns["workdir"], ns["rm"], ns["network"], ns["cpu_shares"]) == ("/srv", False, ["none"], 7)  # repeatable: --network a --network b
    assert (ns["image"], ns["command"]) == ("img", ["ls", "-l", "--rm", "--"])  # verbatim after IMAGE
    assert parse_args(["--", "-img"])["image"] == "-img"
    defaults = parse_args(["img"])
    assert (defaults["entrypoint"], defaults["pull"], defaults["env"], defaults["rm"]) == (None, "missing", [], False)
    assert parse_args(["--entrypoint", "", "img"])["entrypoint"] == ""
    assert parse_args(["-ti", "img"])["env"] == []  # lists are fresh per parse


@pytest.mark.parametrize("argv,match", [
    (["--netw", "none", "img"], "unrecognized option '--netw'"),  # no abbreviations (docker has none)
    (["-itx", "img"], "unrecognized option '-x' in '-itx'"),
    (["-e"], "-e needs a value"),
    (["--name"], "--name needs a value"),
    (["--rm=maybe", "img"], "invalid boolean"),
    (["--pids-limit", "many", "img"], "invalid number 'many' for --pids-limit"),
    (["--rm"], "an IMAGE is required"),
])
def test_parsing_errors_name_the_option(argv: list[str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        parse_args(argv)


def test_help_prints_and_exits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(["--rm", "--help", "img"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ocibox run [OPTIONS] IMAGE") and "--security-opt OPT" in out and "-h, --hostname NAME" in out
