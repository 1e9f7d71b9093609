"""The value types of an image: platforms, descriptors, manifests, indexes and configs.

These live outside ``puller/`` so that the runner and the cache can use them
without importing the registry client (``ocibox run`` of a cached image must
not pay for httpx). Parsing from JSON bytes happens here, once, at the edge;
the rest of ocibox passes these frozen values.
"""

from __future__ import annotations

from ocibox import _json as json
from ocibox._record import field, record
from ocibox.digest import Digest
from ocibox.errors import ManifestError, OciboxError, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)
if TYPE_CHECKING:
    from typing import Any

# Media types (OCI image spec and Docker's schema2).
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

#: layer media type -> compression ("gzip", "zstd" or "none")
LAYER_COMPRESSION = {
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_ND: "none",
    OCI_LAYER_ND_GZIP: "gzip",
    OCI_LAYER_ND_ZSTD: "zstd",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_FOREIGN: "gzip",
    # Some tools write this for uncompressed docker layers.
    "application/vnd.docker.image.rootfs.diff.tar": "none",
}

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@record
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]``; ``arm64`` means ``arm64/v8``."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid --platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "").normalized()

    @classmethod
    def host(cls) -> Platform:
        import platform  # not at import time: it compiles a dozen regexes, and a warm run never needs it

        m = platform.machine().lower()
        arch = {
            "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
        }.get(m, m)
        variant = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8", "arm64": "v8"}.get(m, "")
        return cls("linux", arch, variant)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Platform:
        return cls(str(obj.get("os", "")), str(obj.get("architecture", "")), str(obj.get("variant", "") or "")).normalized()

    def normalized(self) -> Platform:
        arch, variant = self.architecture.lower(), self.variant.lower()
        if arch == "aarch64":
            arch = "arm64"
        if arch in ("x86_64", "x86-64"):
            arch = "amd64"
        if arch == "arm64" and variant in ("", "8"):
            variant = "v8"
        if arch == "arm" and variant == "":
            variant = "v7"
        return Platform(self.os.lower(), arch, variant)

    def matches(self, other: Platform) -> bool:
        """True when ``other`` (a descriptor's platform) satisfies this wanted platform."""
        a, b = self.normalized(), other.normalized()
        if a.os != b.os or a.architecture != b.architecture:
            return False
        return a.variant == b.variant or not a.variant

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


@record
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, obj: Any, what: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise ManifestError(f"{what}: descriptor is not an object")
        try:
            digest = Digest.parse(str(obj["digest"]))
            size = obj["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ManifestError(f"{what}: descriptor size {size!r} is not a non-negative integer")
            media_type = str(obj.get("mediaType", ""))
        except KeyError as e:
            raise ManifestError(f"{what}: descriptor lacks {e.args[0]!r}") from None
        except ManifestError:
            raise
        except OciboxError as e:
            raise ManifestError(f"{what}: {e}") from None
        plat = obj.get("platform")
        urls = obj.get("urls") or ()
        if not isinstance(urls, list | tuple):
            raise ManifestError(f"{what}: descriptor urls {urls!r} is not a list")
        ann = obj.get("annotations") or {}
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=tuple(str(u) for u in urls),
            platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            annotations=tuple(sorted((str(k), str(v)) for k, v in ann.items())) if isinstance(ann, dict) else (),
        )

    @property
    def compression(self) -> str:
        try:
            return LAYER_COMPRESSION[self.media_type]
        except KeyError:
            raise ManifestError(f"layer {self.digest}: unsupported layer media type {self.media_type!r}") from None


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{what}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{what}: not a JSON object")
    return obj


def sniff_media_type(data: bytes, header_type: str, what: str) -> str:
    """The media type of a manifest: its own ``mediaType`` field, else the header's, else by shape."""
    obj = _load_json(data, what)
    mt = obj.get("mediaType") or header_type.split(";")[0].strip()
    if not mt or mt in ("application/json", "text/plain", "application/octet-stream"):
        if "manifests" in obj:
            mt = OCI_INDEX
        elif "layers" in obj and "config" in obj:
            mt = OCI_MANIFEST
        elif obj.get("schemaVersion") == 1:
            mt = DOCKER_SCHEMA1
    if mt in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or obj.get("schemaVersion") == 1:
        raise ManifestError(
            f"{what}: Docker schema1 manifests are deprecated and not supported; push the image again with a current tool"
        )
    if mt not in INDEX_TYPES and mt not in MANIFEST_TYPES:
        raise ManifestError(f"{what}: unsupported manifest media type {mt!r}")
    return str(mt)


@record
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, data: bytes, what: str, media_type: str = "") -> Index:
        obj = _load_json(data, what)
        ms = obj.get("manifests")
        if not isinstance(ms, list):
            raise ManifestError(f"{what}: index has no 'manifests' list")
        return cls(media_type or str(obj.get("mediaType", OCI_INDEX)),
                   tuple(Descriptor.from_json(m, what) for m in ms))

    def select(self, want: Platform, what: str) -> Descriptor:
        """The first manifest (or nested index) whose platform matches ``want``.

        An exact variant match wins over a variant-less entry; an entry without a
        platform is only taken when it is a nested index.
        """
        exact = [d for d in self.manifests if d.platform and d.platform.normalized() == want.normalized()]
        if exact:
            return exact[0]
        loose = [d for d in self.manifests if d.platform and want.matches(d.platform)]
        if loose:
            return loose[0]
        # arm64 images published without a variant match a wanted arm64/v8.
        if want.architecture == "arm64":
            for d in self.manifests:
                if d.platform and d.platform.os == want.os and d.platform.architecture == "arm64":
                    return d
        nested = [d for d in self.manifests if d.platform is None and d.media_type in INDEX_TYPES]
        if nested:
            return nested[0]
        have = ", ".join(sorted({str(d.platform) for d in self.manifests if d.platform})) or "none"
        raise ManifestError(f"{what}: no image for platform {want} (available: {have}); use --platform")


@record
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, data: bytes, what: str, media_type: str = "") -> Manifest:
        obj = _load_json(data, what)
        if "config" not in obj or not isinstance(obj.get("layers"), list):
            raise ManifestError(f"{what}: manifest lacks 'config' or 'layers'")
        config = Descriptor.from_json(obj["config"], what)
        layers = tuple(Descriptor.from_json(x, what) for x in obj["layers"])
        for layer in layers:
            layer.compression  # noqa: B018 - raises for unknown layer types
        ann = obj.get("annotations") or {}
        return cls(
            media_type or str(obj.get("mediaType", OCI_MANIFEST)),
            config,
            layers,
            tuple(sorted((str(k), str(v)) for k, v in ann.items())) if isinstance(ann, dict) else (),
        )


@record
class ImageConfig:
    """The parts of an image config ocibox uses; ``raw`` keeps the whole verified JSON."""

    platform: Platform
    diff_ids: tuple[Digest, ...]
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    created: str = ""
    # Docker's legacy resource fields (defaults that run flags override).
    memory: int = 0
    memory_swap: int = 0
    cpu_shares: int = 0
    cpuset: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def parse(cls, data: bytes, what: str = "image config") -> ImageConfig:
        obj = _load_json(data, what)
        rootfs = obj.get("rootfs")
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
            raise ManifestError(f"{what}: lacks rootfs.diff_ids")
        try:
            diff_ids = tuple(Digest.parse(str(d)) for d in rootfs["diff_ids"])
        except OciboxError as e:
            raise ManifestError(f"{what}: {e}") from None
        c = obj.get("config") or {}
        if not isinstance(c, dict):
            raise ManifestError(f"{what}: 'config' is not an object")

        def strs(v: Any, name: str) -> tuple[str, ...] | None:
            if v is None:
                return None
            if isinstance(v, str):  # some tools write a string; docker treats it as one argument
                return (v,)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ManifestError(f"{what}: config.{name} is not a list of strings")
            return tuple(v)

        def int_field(name: str) -> int:
            v = c.get(name, 0)
            return v if isinstance(v, int) and not isinstance(v, bool) else 0

        labels = c.get("Labels") or {}
        return cls(
            platform=Platform(str(obj.get("os", "linux")), str(obj.get("architecture", "")),
                              str(obj.get("variant", "") or "")),
            diff_ids=diff_ids,
            entrypoint=strs(c.get("Entrypoint"), "Entrypoint"),
            cmd=strs(c.get("Cmd"), "Cmd"),
            env=strs(c.get("Env"), "Env") or (),
            user=str(c.get("User") or ""),
            working_dir=str(c.get("WorkingDir") or ""),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, dict) else (),
            exposed_ports=tuple(sorted(ep)) if isinstance(ep := c.get("ExposedPorts"), dict) else (),
            volumes=tuple(sorted(vs)) if isinstance(vs := c.get("Volumes"), dict) else (),
            stop_signal=str(c.get("StopSignal") or ""),
            created=str(obj.get("created") or ""),
            memory=int_field("Memory"),
            memory_swap=int_field("MemorySwap"),
            cpu_shares=int_field("CpuShares"),
            cpuset=str(c.get("Cpuset") or ""),
            raw=obj,
        )


def chain_ids(diff_ids: tuple[Digest, ...] | list[Digest]) -> list[Digest]:
    """OCI chain ids: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[Digest] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append(Digest.of_bytes(f"{out[-1]} {d}".encode()))
    return out
