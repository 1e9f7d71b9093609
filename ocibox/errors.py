"""The one exception tree of ocibox.

Every failure ocibox reports is an :class:`OciboxError`. Each carries the exit
code the CLI returns (docker's convention: 125 ocibox itself failed, 126 the
command cannot be executed, 127 the command was not found); the CLI maps
errors to exit codes in one place (``cli.main``) and prints ``str(error)`` as
one line: what was wrong and what to do.

::

    OciboxError                      125
    ├── UsageError                   125  bad flag values, bad --platform, bad sizes
    ├── ReferenceError_              125  an image reference that breaks a rule
    ├── ConfigError                  125  config file / credentials file unreadable or wrong
    ├── RegistryError                125  status, OCI error code, temporary or not
    │   ├── AuthError                125  401/403, token service failures
    │   ├── NotFoundError            125  manifest or blob unknown (404)
    │   └── TransportError           125  connection, timeouts (temporary)
    │       └── TLSError             125  handshake or certificate failure (never retried)
    ├── ManifestError                125  unknown/schema1 media types, bad JSON, too large,
    │                                     no matching platform
    ├── DigestMismatch               125  size or sha256 of bytes disagree with what was expected
    ├── LayerError                   125  corrupt compression, truncated tar, diff_id mismatch
    │   └── HostileLayerError        125  an entry that would escape or steer the store
    ├── StoreError                   125  store corrupt, disk full, locked
    │   └── ImageNotFound            125  no such image in the store (docker: "No such image")
    ├── NetworkError                 125  unknown network, port in use, overlapping subnet,
    │                                     missing or failing CNI plugin, DNS server
    ├── RuntimeSetupError            125  namespaces, mounts, pivot_root, cgroups failed
    │   └── CgroupError              125  a limit that cannot be applied
    ├── RootlessError                125  what a user without root cannot have here, and what to do
    │                                     (no subordinate ids, no delegated cgroup, no helper)
    ├── ContainerCommandError        126  cannot execute (permission, not executable)
    │   └── CommandNotFound          127  no such command in the container
    └── InUseError                   125  rmi of an image a running container uses
"""

from __future__ import annotations


class OciboxError(Exception):
    """Base of every error ocibox reports. ``exit_code`` is what the CLI returns."""

    exit_code: int = 125

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(OciboxError):
    """A flag or argument value that cannot be used."""


class ReferenceError_(OciboxError):
    """An image reference that breaks one of docker's rules."""


class ConfigError(OciboxError):
    """A configuration or credentials file that cannot be read or is malformed."""


class RegistryError(OciboxError):
    """A registry answered with an error, or could not be reached.

    ``status`` is the HTTP status (0 when no answer came), ``code`` the OCI
    distribution error code (``MANIFEST_UNKNOWN``, ``DENIED``, ...) when the
    body carried one, and ``temporary`` says whether a retry may succeed.
    """

    def __init__(self, message: str, *, status: int = 0, code: str = "", temporary: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.temporary = temporary


class AuthError(RegistryError):
    """Authentication or authorisation failed (401/403, token service)."""


class NotFoundError(RegistryError):
    """The registry does not know the repository, manifest or blob."""


class TransportError(RegistryError):
    """Connection refused or reset, TLS failure, timeout."""


class TLSError(TransportError):
    """TLS with the registry failed: a certificate nobody trusted, or a peer that does not speak
    TLS. Never temporary, never retried: trying again cannot make the certificate trusted."""


class ManifestError(OciboxError):
    """A manifest, index or config that cannot be used."""


class DigestMismatch(OciboxError):
    """Bytes whose size or digest differ from what the descriptor promised."""


class LayerError(OciboxError):
    """A layer that cannot be unpacked: bad compression, truncated tar, diff_id mismatch."""


class HostileLayerError(LayerError):
    """A tar entry that would write outside its layer or steer the store."""


class StoreError(OciboxError):
    """The store cannot be used: corrupt, full, or not writable."""


class ImageNotFound(StoreError):
    """No image of that name or id is in the store."""


class InUseError(OciboxError):
    """The object is used by a running container."""


class NetworkError(OciboxError):
    """A container network that cannot be set up, changed or removed: an unknown network, a host
    port in use, an overlapping subnet, a missing or failing CNI plugin or DNS server."""


class RuntimeSetupError(OciboxError):
    """The container could not be set up (namespaces, mounts, pivot_root)."""


class CgroupError(RuntimeSetupError):
    """A cgroup could not be created, or a requested limit cannot be applied."""


class RootlessError(OciboxError):
    """Something a user without root cannot have on this host as it is set up (a subordinate id
    range, a delegated cgroup, newuidmap): the message says why and what would give it."""


class ContainerCommandError(OciboxError):
    """The container's command exists but cannot be executed."""

    exit_code = 126


class CommandNotFound(ContainerCommandError):
    """The container's command does not exist in the container."""

    exit_code = 127


# --------------------------------------------------------------------- the wire format
# A child process (the container's setup, a forked layer unpacker) reports an error to its parent as
# one line on a pipe: b"E" + class name + b"\t" + message + b"\n". The parent raises the same class
# (any OciboxError of this module), or ``default`` for a name it does not know.


def to_wire(e: BaseException, what: str = "") -> tuple[bytes, int]:
    """The line for ``e`` and the exit code its process should end with. An OSError is named by its
    strerror and file; anything else that is not an OciboxError by its type, after ``what``."""
    if isinstance(e, OciboxError):
        kind, message, code = type(e).__name__, str(e), e.exit_code
    elif isinstance(e, OSError):
        where = f" ({e.filename})" if e.filename else ""
        kind, message, code = "", f"{what}{e.strerror or e}{where}", 125
    else:
        kind, message, code = "", f"{what}{type(e).__name__}: {e}", 125
    line = f"E{kind}\t{message}".replace("\n", " ") + "\n"
    return line.encode(errors="replace"), code


def from_wire(data: bytes, default: type[OciboxError]) -> OciboxError | None:
    """The error a ``to_wire`` line describes, None if ``data`` is not one."""
    if not data.startswith(b"E"):
        return None
    kind, _, message = data[1:].decode(errors="replace").partition("\t")
    cls = globals().get(kind, default) if kind else default
    if not (isinstance(cls, type) and issubclass(cls, OciboxError)):
        cls = default
    return cls(message.strip())
