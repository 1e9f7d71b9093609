"""``--ulimit NAME=SOFT[:HARD]``: docker's names and syntax, applied in the container process.

Only limits the user asks for are touched: the container inherits the rest from ocibox, as with
``docker run``. Raising a hard limit needs ``CAP_SYS_RESOURCE``, which the hosts ocibox runs on may
not have (hard nofile 20000 there): ``check_ulimits`` says so before anything starts, naming the limit.
"""

from __future__ import annotations

import resource

from ocibox._record import record
from ocibox.errors import RuntimeSetupError, UsageError
from ocibox.linux import proc

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable

INFINITY = resource.RLIM_INFINITY

# docker's --ulimit names (go-units ulimit.go)
NAMES: dict[str, int] = {
    "as": resource.RLIMIT_AS, "core": resource.RLIMIT_CORE, "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA, "fsize": resource.RLIMIT_FSIZE, "locks": 10,  # RLIMIT_LOCKS: Linux has it, Python does not name it
    "memlock": resource.RLIMIT_MEMLOCK, "msgqueue": resource.RLIMIT_MSGQUEUE, "nice": resource.RLIMIT_NICE,
    "nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC, "rss": resource.RLIMIT_RSS,
    "rtprio": resource.RLIMIT_RTPRIO, "rttime": resource.RLIMIT_RTTIME,
    "sigpending": resource.RLIMIT_SIGPENDING, "stack": resource.RLIMIT_STACK,
}
_BY_RESOURCE = {v: k for k, v in NAMES.items()}
_CAP_SYS_RESOURCE = 24


@record
class Ulimit:
    """One rlimit to set: ``resource.RLIMIT_*``, soft and hard (``INFINITY`` for unlimited)."""

    resource: int
    soft: int
    hard: int

    @property
    def name(self) -> str:
        return _BY_RESOURCE.get(self.resource, str(self.resource))

    def __str__(self) -> str:
        def v(x: int) -> str:
            return "unlimited" if x == INFINITY else str(x)

        return f"{self.name}={v(self.soft)}:{v(self.hard)}"


def _value(text: str, opt: str) -> int:
    if text in ("unlimited", "-1"):
        return INFINITY
    if not text.isdigit():
        raise UsageError(f"--ulimit {opt}: {text!r} is not a number; use NAME=SOFT[:HARD] with integers "
                         "or 'unlimited'")
    return int(text)


def parse_ulimit(value: str) -> Ulimit:
    """``nofile=1024:2048`` -> Ulimit(RLIMIT_NOFILE, 1024, 2048); ``nofile=1024`` sets both."""
    name, sep, rest = value.partition("=")
    if not sep or not rest:
        raise UsageError(f"--ulimit {value}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    if name not in NAMES:
        raise UsageError(f"--ulimit {value}: unknown limit {name!r}; one of {', '.join(sorted(NAMES))}")
    soft_s, _, hard_s = rest.partition(":")
    soft = _value(soft_s, value)
    hard = _value(hard_s, value) if hard_s else soft

    def rank(x: int) -> float:
        return float("inf") if x == INFINITY else x

    if rank(soft) > rank(hard):
        raise UsageError(f"--ulimit {value}: the soft limit {soft_s} is above the hard limit {hard_s}")
    return Ulimit(NAMES[name], soft, hard)


def _has_cap_sys_resource() -> bool:
    return bool(proc.capability_set("CapEff") >> _CAP_SYS_RESOURCE & 1)


def _raise_above(u: Ulimit, cur_hard: int) -> RuntimeSetupError:
    cur = "unlimited" if cur_hard == INFINITY else str(cur_hard)
    return RuntimeSetupError(
        f"--ulimit {u}: the hard {u.name} limit here is {cur} and raising it needs CAP_SYS_RESOURCE, "
        f"which this process lacks; ask for a hard limit of at most {cur}")


def check_ulimits(ulimits: Iterable[Ulimit]) -> None:
    """Before starting: refuse a hard limit above the current one when it cannot be raised."""
    if _has_cap_sys_resource():
        return
    for u in ulimits:
        _, cur_hard = resource.getrlimit(u.resource)
        if cur_hard != INFINITY and (u.hard == INFINITY or u.hard > cur_hard):
            raise _raise_above(u, cur_hard)


def apply_ulimits(ulimits: Iterable[Ulimit]) -> None:
    """In the container process, before exec: set each requested limit, nothing else."""
    for u in ulimits:
        try:
            resource.setrlimit(u.resource, (u.soft, u.hard))
        except (OSError, ValueError) as e:
            _, cur_hard = resource.getrlimit(u.resource)
            if (isinstance(e, ValueError) or e.errno == 1) and (u.hard == INFINITY or u.hard > cur_hard != INFINITY):
                raise _raise_above(u, cur_hard) from None
            if u.resource == resource.RLIMIT_NOFILE:
                try:
                    with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
                        nr_open = f.read().strip()
                except OSError:
                    nr_open = "?"
                raise RuntimeSetupError(f"--ulimit {u}: refused ({e}); nofile cannot exceed fs.nr_open "
                                        f"({nr_open})") from None
            raise RuntimeSetupError(f"--ulimit {u}: setrlimit refused it ({e})") from None
