"""The run flags' pieces that verbs other than ``run`` use (ps, stop, kill, rename, the cleanup of a
detached container): docker's signal names and container name rule, the network flags as given. No
heavy import here: ``ocibox ps`` and ``stop`` load this, not the runner's spec, hardening and seccomp."""

from __future__ import annotations

from ocibox._record import record
from ocibox.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any
else:
    import _signal  # the names signal.Signals has (SIG*, not SIG_*), without its enum (~3 ms of a stop)


@record
class NetFlags:
    """The network flags as given (kept with a detached container: each start makes its request again)."""

    network: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    publish_all: bool = False
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_option: tuple[str, ...] = ()
    add_host: tuple[str, ...] = ()
    ip: str = ""
    mac: str = ""
    aliases: tuple[str, ...] = ()

    def mode(self) -> str:
        """none, host, bridge (the default), container or ns, without importing the network room."""
        if len(self.network) == 1:
            v = self.network[0]
            if v in ("none", "host"):
                return v
            if v.startswith(("container:", "ns:")):
                return v.partition(":")[0]
        return "bridge"

    def plain(self) -> bool:
        """Only --network none or host: nothing for the network room to do."""
        return self.mode() in ("none", "host") and self == NetFlags(self.network)

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in type(self).__record_fields__:  # type: ignore[attr-defined]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NetFlags:
        names = {f.name for f in cls.__record_fields__}  # type: ignore[attr-defined]
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**kw)


def parse_signal(text: str, what: str = "signal") -> int:
    """``SIGTERM``, ``TERM``, ``term`` or ``15`` -> 15 (docker's and runc's forms)."""
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < _signal.NSIG:
            return n
    else:
        name = t if t.startswith("SIG") else "SIG" + t
        sig = getattr(_signal, name, None) if not name.startswith("SIG_") else None
        if isinstance(sig, int):
            return sig
    raise UsageError(f"invalid {what} {text!r}: use a name like SIGTERM (or TERM) or a number")


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_name(name: str) -> str:
    """docker's container name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a leading / is docker's own)."""
    bare = name[1:] if name.startswith("/") else name
    if len(bare) < 2 or bare[0] in "_.-" or not _NAME_CHARS.issuperset(bare):
        raise UsageError(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
                         "at least two characters")
    return bare
