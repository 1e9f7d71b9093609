"""Image references, parsed and normalised by docker's rules.

``alpine`` is ``docker.io/library/alpine:latest``; a first component is a
registry host when it contains ``.`` or ``:`` or is ``localhost``; API calls
for ``docker.io`` go to ``registry-1.docker.io``.
"""

from __future__ import annotations

from ocibox._record import record
from ocibox.digest import Digest
from ocibox.errors import OciboxError, ReferenceError_

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
#: where Docker Hub's distribution API is reached
DOCKER_HUB_API_HOST = "registry-1.docker.io"
#: every name Docker Hub goes by (references, ``docker login`` servers, credential keys): all are ``docker.io``
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# The grammar of docker/distribution's reference package, as plain string checks: ``re`` (with enum
# behind it) is ~5 ms of a warm ``ocibox run``, which parses the image's name. Each is the regex in
# its comment; tests/unit/test_reference.py holds them to it.
_ALNUM_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_HEX_LOWER = "0123456789abcdef"


def _is_path_component(s: str) -> bool:
    """``^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$``"""
    i, n = 0, len(s)
    while True:
        start = i
        while i < n and s[i] in _ALNUM_LOWER:
            i += 1
        if i == start:
            return False
        if i == n:
            return True
        c = s[i]
        if c == ".":
            i += 1
        elif c == "_":
            i += 2 if s.startswith("__", i) else 1
        elif c == "-":
            while i < n and s[i] == "-":
                i += 1
        else:
            return False


def _is_domain(s: str) -> bool:
    """``^(?:C(?:\\.C)*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`` where C is
    ``[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]``."""
    if s.startswith("["):
        end = s.find("]")
        if end < 2 or s[1:end].strip("0123456789abcdefABCDEF:."):
            return False
        host, rest = "", s[end + 1:]
        if rest and not rest.startswith(":"):
            return False
    else:
        host, colon, port = s.partition(":")
        rest = colon + port
        for comp in host.split("."):
            if not comp or comp[0] == "-" or comp[-1] == "-" or not _DOMAIN_CHARS.issuperset(comp):
                return False
    return not rest or (len(rest) > 1 and rest[1:].isascii() and rest[1:].isdigit())


def _is_tag(s: str) -> bool:
    """``^[\\w][\\w.-]{0,127}$``"""
    return 0 < len(s) <= 128 and (s[0].isalnum() or s[0] == "_") and all(c.isalnum() or c in "_.-" for c in s)


def _is_hex64(s: str) -> bool:
    """``^[a-f0-9]{64}$``"""
    return len(s) == 64 and not s.strip(_HEX_LOWER)


_NAME_MAX = 255


@record
class Reference:
    """A normalised image reference. ``tag`` is ``None`` only when a digest is given alone."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        return parse(text)

    @property
    def api_host(self) -> str:
        """The host the distribution API is reached at (``registry-1.docker.io`` for Docker Hub)."""
        return api_host(self.registry)

    @property
    def name(self) -> str:
        """``registry/repository``, the full name without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def familiar(self) -> str:
        """The short form docker prints: ``alpine:3.20``, ``user/app:1``, ``ghcr.io/o/r:tag``."""
        repo = self.repository
        if self.registry == DEFAULT_REGISTRY:
            name = repo.removeprefix("library/") if repo.count("/") == 1 else repo
        else:
            name = f"{self.registry}/{repo}"
        return name

    def __str__(self) -> str:
        s = self.name
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s


def registry_name(host: str) -> str:
    """The canonical name of a registry host: ``docker.io`` for any of Docker Hub's names."""
    return DEFAULT_REGISTRY if host in DOCKER_HUB_HOSTS else host


def api_host(registry: str) -> str:
    """The host the distribution API of ``registry`` is reached at (``registry-1.docker.io`` for Docker Hub)."""
    return DOCKER_HUB_API_HOST if registry_name(registry) == DEFAULT_REGISTRY else registry


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    if i == -1:
        return DEFAULT_REGISTRY, name
    first = name[:i]
    # docker/distribution normalize.go: a first component is a domain when it has
    # a '.' or ':', is 'localhost', or has uppercase letters (never valid in a path).
    if "." in first or ":" in first or first == "localhost" or first.lower() != first:
        return first, name[i + 1 :]
    return DEFAULT_REGISTRY, name


def parse(text: str) -> Reference:
    """Parse ``text`` into a :class:`Reference`, or raise :class:`ReferenceError_` naming the rule."""
    orig = text
    if not text:
        raise ReferenceError_("invalid reference '': an image name is required")
    if text != text.strip() or any(c.isspace() for c in text):
        raise ReferenceError_(f"invalid reference {orig!r}: whitespace is not allowed")

    digest: Digest | None = None
    if "@" in text:
        text, _, dpart = text.partition("@")
        try:
            digest = Digest.parse(dpart)
        except OciboxError as e:
            raise ReferenceError_(f"invalid reference {orig!r}: {e}") from None

    tag: str | None = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _is_tag(tag):
            raise ReferenceError_(
                f"invalid reference {orig!r}: tag {tag!r} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
            )

    registry, path = _split_domain(text)
    if not path:
        raise ReferenceError_(f"invalid reference {orig!r}: repository name is empty")
    if not _is_domain(registry):
        raise ReferenceError_(f"invalid reference {orig!r}: {registry!r} is not a valid registry host[:port]")
    for comp in path.split("/"):
        if not comp:
            raise ReferenceError_(f"invalid reference {orig!r}: empty path component")
        if not _is_path_component(comp):
            if comp.lower() != comp:
                raise ReferenceError_(f"invalid reference {orig!r}: repository name must be lowercase")
            raise ReferenceError_(
                f"invalid reference {orig!r}: path component {comp!r} must be lowercase letters and digits "
                "separated by '.', '_', '__' or '-'"
            )
    registry = registry_name(registry)
    if registry == DEFAULT_REGISTRY and "/" not in path:
        if _is_hex64(path) and tag is None and digest is None:
            raise ReferenceError_(
                f"invalid reference {orig!r}: a repository name cannot be 64 hex digits (that is an image id)"
            )
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > _NAME_MAX:
        raise ReferenceError_(f"invalid reference {orig!r}: name is longer than {_NAME_MAX} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)
