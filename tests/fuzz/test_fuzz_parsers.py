"""Bounded hypothesis fuzzing of the parsers at ocibox's edges (part of the normal suite):

- ``reference.parse``: never anything but a Reference or ReferenceError_; ``str`` round-trips.
- ``_challenge.parse_challenges``: never raises; generated challenges parse back to their params.
- ``image``: manifests, indexes, configs and platforms from JSON-ish input raise only
  ManifestError/UsageError (OciboxError), and ``Index.select`` picks a listed, matching entry.
A longer run: tests/fuzz/long_fuzz.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ocibox.errors import ManifestError, OciboxError, ReferenceError_
from ocibox.image import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    sniff_media_type,
)
from ocibox.puller._challenge import Challenge, parse_challenges, pick_challenge
from ocibox.reference import Reference, parse

BOUNDED = settings(max_examples=int(os.environ.get("OCIBOX_FUZZ_EXAMPLES", "200")), deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# ------------------------------------------------------------------------------ references
HEX = "0123456789abcdef"
DIGESTS = st.one_of(st.text(HEX, min_size=64, max_size=64).map(lambda h: "sha256:" + h),
                    st.text(HEX, min_size=128, max_size=128).map(lambda h: "sha512:" + h),
                    st.text(HEX + "g:", max_size=70).map(lambda h: "sha256:" + h),
                    st.sampled_from(["md5:abc", "sha256:", ":", "sha256:" + "A" * 64]))
COMP = st.one_of(st.from_regex(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*", fullmatch=True),
                 st.text("aZ0._-/:@ ", min_size=0, max_size=5))
DOMAIN = st.one_of(st.sampled_from(["docker.io", "index.docker.io", "localhost", "localhost:5000", "127.0.0.1:5000",
                                    "[::1]:5000", "ghcr.io", "Registry.Example.COM", "a-b.c", "-a.b", "a..b", "x:y"]),
                   st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?(\.[a-z0-9]{1,4}){0,2}(:[0-9]{1,5})?",
                                 fullmatch=True))
TAGS = st.one_of(st.from_regex(r"[\w][\w.-]{0,10}", fullmatch=True), st.text("a.-_:A ", max_size=5),
                 st.just("t" * 129))


@st.composite
def references(draw: Any) -> str:
    s = ""
    if draw(st.booleans()):
        s = draw(DOMAIN) + "/"
    s += "/".join(draw(st.lists(COMP, min_size=1, max_size=4)))
    if draw(st.booleans()):
        s += ":" + draw(TAGS)
    if draw(st.booleans()):
        s += "@" + draw(DIGESTS)
    return s


def _check_reference(text: str) -> None:
    try:
        r = parse(text)
    except ReferenceError_ as e:
        assert str(e) and "\n" not in str(e)
        return
    assert isinstance(r, Reference)
    again = parse(str(r))
    assert again == r, (text, str(r), again)
    assert r.tag is not None or r.digest is not None


@BOUNDED
@given(references())
def test_reference_structured(text: str) -> None:
    _check_reference(text)


@BOUNDED
@given(st.text(max_size=80))
def test_reference_any_text(text: str) -> None:
    _check_reference(text)


# ------------------------------------------------------------------------------ WWW-Authenticate
TOKEN = st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}", fullmatch=True)
QVALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def challenges(draw: Any) -> tuple[str, list[Challenge]]:
    out: list[Challenge] = []
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        scheme = draw(TOKEN)
        keys = draw(st.lists(TOKEN, min_size=1, max_size=4, unique_by=str.lower))
        params: dict[str, str] = {}
        rendered = []
        for k in keys:
            if draw(st.booleans()):
                v = draw(QVALUE)
                rendered.append(f"{k}{draw(st.sampled_from(['=', ' = ', '=']))}{_quote(v)}")
            else:
                v = draw(TOKEN)
                rendered.append(f"{k}={v}")
            params[k.lower()] = v
        parts.append(scheme + " " + draw(st.sampled_from([",", ", ", " ,  "])).join(rendered))
        out.append(Challenge(scheme.lower(), params))
    return ", ".join(parts), out


@BOUNDED
@given(challenges())
def test_challenge_round_trip(pair: tuple[str, list[Challenge]]) -> None:
    header, want = pair
    got = parse_challenges(header)
    assert got == want, (header, got)


@BOUNDED
@given(st.text(max_size=120))
def test_challenge_any_text(header: str) -> None:
    got = parse_challenges(header)
    assert all(isinstance(c, Challenge) and c.scheme == c.scheme.lower() for c in got)
    picked = pick_challenge(got)
    assert picked is None or picked.scheme in ("bearer", "basic")
    for c in got:
        c.realm, c.service, c.scopes, c.error  # noqa: B018 - properties must not raise


# ------------------------------------------------------------------------------ manifests and configs
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2, 2**64) | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=12)
ANY = st.one_of(JSON, st.sampled_from([None, 0, -1, 1.5, True, "", "x", [], {}, [1, "a"], {"a": 1}]))
DIGEST_STR = st.one_of(st.just("sha256:" + "a" * 64), DIGESTS, ANY)
PLATFORM = st.one_of(
    st.fixed_dictionaries({"os": st.sampled_from(["linux", "windows", "", "Linux"]),
                           "architecture": st.sampled_from(["amd64", "arm64", "arm", "x86_64", "aarch64", "", "386"]),
                           "variant": st.sampled_from(["", "v7", "v8", "8", "v6"])}),
    ANY)
MEDIA = st.sampled_from([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, "application/vnd.oci.image.layer.v1.tar",
                         "application/vnd.oci.image.layer.v1.tar+gzip", "text/plain", "", "x"])


@st.composite
def descriptors(draw: Any) -> Any:
    d: dict[str, Any] = {}
    for key, strat in (("mediaType", st.one_of(MEDIA, ANY)), ("digest", DIGEST_STR),
                       ("size", st.one_of(st.integers(-1, 2**63), ANY)), ("urls", ANY),
                       ("platform", PLATFORM), ("annotations", ANY)):
        if draw(st.integers(0, 4)):
            d[key] = draw(strat)
    return d if draw(st.integers(0, 9)) else draw(ANY)


@st.composite
def documents(draw: Any) -> bytes:
    obj: dict[str, Any] = {}
    fields = {
        "schemaVersion": st.sampled_from([2, 1, "2", None]),
        "mediaType": st.one_of(MEDIA, ANY),
        "config": st.one_of(descriptors(), ANY),
        "layers": st.one_of(st.lists(descriptors(), max_size=3), ANY),
        "manifests": st.one_of(st.lists(descriptors(), max_size=4), ANY),
        "annotations": ANY,
        "rootfs": st.one_of(st.fixed_dictionaries({"type": st.just("layers"),
                                                   "diff_ids": st.one_of(st.lists(DIGEST_STR, max_size=3), ANY)}),
                            ANY),
        "architecture": ANY, "os": ANY, "variant": ANY, "created": ANY,
        "config_c": st.dictionaries(st.sampled_from(["Entrypoint", "Cmd", "Env", "User", "WorkingDir", "Labels",
                                                     "ExposedPorts", "Volumes", "StopSignal", "Memory", "Cpuset"]),
                                    ANY, max_size=5),
    }
    for k, strat in fields.items():
        if draw(st.booleans()):
            v = draw(strat)
            if k == "config_c":
                obj["config"] = v
            else:
                obj[k] = v
    doc = json.dumps(obj).encode()
    mode = draw(st.integers(0, 9))
    if mode == 0:
        return draw(st.binary(max_size=64))
    if mode == 1:
        return json.dumps(draw(ANY)).encode()
    if mode == 2:
        cut = draw(st.integers(0, len(doc)))
        return doc[:cut]
    return doc


WRONG = st.sampled_from([None, 0, 5, -1, 2**70, 1.5, True, "", "x", [], {}, [1, "a"], ["b", 2], {"a": 1},
                         {"1": 2, "a": None}, "sha256:" + "a" * 64, "linux/amd64"])
_D = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "a" * 64, "size": 3,
      "urls": ["http://127.0.0.1/x"], "annotations": {"k": "v"}}
TEMPLATES = [
    {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {**_D, "mediaType": "application/vnd.oci.image.config.v1+json"},
     "layers": [dict(_D), dict(_D)], "annotations": {"a": "b"}},
    {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**_D, "mediaType": OCI_MANIFEST, "platform": {"os": "linux", "architecture": "amd64"}},
        {**_D, "mediaType": OCI_MANIFEST, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {**_D, "mediaType": OCI_INDEX}]},
    {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z", "rootfs": {"type": "layers",
     "diff_ids": ["sha256:" + "b" * 64]}, "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "x"], "Env": ["A=b"],
     "User": "app", "WorkingDir": "/w", "Labels": {"l": "v"}, "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/v": {}},
     "StopSignal": "SIGTERM", "Memory": 5, "Cpuset": "0"}},
]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def near_valid(draw: Any) -> bytes:
    """A valid manifest, index or config with 1-3 values replaced by wrongly typed ones (or removed)."""
    obj = json.loads(json.dumps(draw(st.sampled_from(TEMPLATES))))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(obj) if p]
        path = draw(st.sampled_from(paths))
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.integers(0, 5)) == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = json.loads(json.dumps(draw(WRONG)))  # a copy: never share samples
    return json.dumps(obj).encode()


def _only_our_errors(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except OciboxError as e:
        assert str(e) and "\n" not in str(e)
        return None


@BOUNDED
@given(st.one_of(documents(), near_valid(), near_valid()), st.sampled_from(["", OCI_MANIFEST, OCI_INDEX, "application/json", "text/plain; charset=x"]))
def test_manifest_index_config_decoding(data: bytes, header: str) -> None:
    _only_our_errors(sniff_media_type, data, header, "fuzz")
    m = _only_our_errors(Manifest.parse, data, "fuzz")
    if m is not None:
        assert all(isinstance(x.size, int) and x.size >= 0 for x in (m.config, *m.layers))
    _only_our_errors(ImageConfig.parse, data, "fuzz")
    idx = _only_our_errors(Index.parse, data, "fuzz")
    if idx is not None:
        for want in (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"), Platform("linux", "arm", "v7")):
            d = _only_our_errors(idx.select, want, "fuzz")
            if d is not None:
                assert d in idx.manifests
                assert d.platform is None or want.matches(d.platform) or d.platform.architecture == "arm64"


@BOUNDED
@given(st.text(max_size=30))
def test_platform_parse(text: str) -> None:
    p = _only_our_errors(Platform.parse, text)
    if p is not None:
        assert Platform.parse(str(p)) == p


@BOUNDED
@given(st.lists(PLATFORM.filter(lambda x: isinstance(x, dict)), min_size=1, max_size=5),
       st.sampled_from(["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm64/v8", "windows/amd64"]))
def test_platform_selection(plats: list[Any], want_s: str) -> None:
    """Selection from a well-formed index: an exact match wins; otherwise a matching entry; else
    ManifestError naming the platforms available."""
    ms = [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + f"{i:064x}", "size": 10, "platform": p}
          for i, p in enumerate(plats)]
    idx = Index.parse(json.dumps({"schemaVersion": 2, "manifests": ms}).encode(), "fuzz")
    want = Platform.parse(want_s)
    try:
        d = idx.select(want, "fuzz")
    except ManifestError as e:
        assume(True)
        assert not any(m.platform and want.matches(m.platform) for m in idx.manifests), str(e)
        return
    assert d.platform is not None
    exact = [m for m in idx.manifests if m.platform and m.platform.normalized() == want.normalized()]
    if exact:
        assert d == exact[0]
    else:
        assert want.matches(d.platform) or (want.architecture == "arm64" == d.platform.architecture)
