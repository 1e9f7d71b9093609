"""Image references: docker's normalisation rules, and errors naming the rule broken."""

from __future__ import annotations

import pytest

from ocibox.digest import Digest
from ocibox.errors import ReferenceError_
from ocibox.reference import parse

D = "sha256:" + "a" * 64

VALID = [
    # text, registry, repository, tag, digest, api host
    ("alpine", "docker.io", "library/alpine", "latest", None, "registry-1.docker.io"),
    ("alpine:3.20", "docker.io", "library/alpine", "3.20", None, "registry-1.docker.io"),
    ("user/app", "docker.io", "user/app", "latest", None, "registry-1.docker.io"),
    ("docker.io/alpine", "docker.io", "library/alpine", "latest", None, "registry-1.docker.io"),
    ("index.docker.io/library/alpine:1", "docker.io", "library/alpine", "1", None, "registry-1.docker.io"),
    ("registry-1.docker.io/user/app", "docker.io", "user/app", "latest", None, "registry-1.docker.io"),
    ("ghcr.io/o/r:tag", "ghcr.io", "o/r", "tag", None, "ghcr.io"),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None, "localhost:5000"),
    ("localhost/x", "localhost", "x", "latest", None, "localhost"),
    ("127.0.0.1:5000/a/b/c:v1.2_3-rc", "127.0.0.1:5000", "a/b/c", "v1.2_3-rc", None, "127.0.0.1:5000"),
    (f"host:5000/a/b@{D}", "host:5000", "a/b", None, D, "host:5000"),
    (f"alpine:3@{D}", "docker.io", "library/alpine", "3", D, "registry-1.docker.io"),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None, "[::1]:5000"),
    ("a__b/c-d/e--f.g", "docker.io", "a__b/c-d/e--f.g", "latest", None, "registry-1.docker.io"),
    ("Host.Example/x", "Host.Example", "x", "latest", None, "Host.Example"),
    ("x:" + "t" * 128, "docker.io", "library/x", "t" * 128, None, "registry-1.docker.io"),
]


@pytest.mark.parametrize(("text", "registry", "repo", "tag", "digest", "api"), VALID)
def test_valid(text: str, registry: str, repo: str, tag: str | None, digest: str | None, api: str) -> None:
    r = parse(text)
    assert (r.registry, r.repository, r.tag) == (registry, repo, tag)
    assert r.digest == (Digest.parse(digest) if digest else None)
    assert r.api_host == api
    assert r.identifier == (digest or tag)


INVALID = [
    ("", "image name is required"),
    (" alpine", "whitespace"),
    ("alpine latest", "whitespace"),
    ("Alpine", "lowercase"),
    ("user/App", "lowercase"),
    ("alpine:", "tag"),
    ("alpine:-x", "tag"),
    ("alpine:.x", "tag"),
    ("alpine:" + "t" * 129, "tag"),
    ("alpine@sha256:abc", "64 lowercase hex"),
    ("alpine@md5:" + "a" * 32, "unsupported algorithm"),
    ("alpine@", "digest"),
    ("a//b", "empty path component"),
    ("a/b/", "empty path component"),
    ("host:5000/", "repository name is empty"),
    ("a/-b", "path component"),
    ("a/b_", "path component"),
    ("a/b___c", "path component"),
    ("-host.io/x", "registry host"),
    ("a" * 64, "image id"),
    ("x/" + "a" * 260, "longer than 255"),
]


@pytest.mark.parametrize(("text", "rule"), INVALID)
def test_invalid(text: str, rule: str) -> None:
    with pytest.raises(ReferenceError_) as ei:
        parse(text)
    assert rule in str(ei.value)
    assert "\n" not in str(ei.value)


def test_str_and_familiar() -> None:
    assert str(parse("alpine")) == "docker.io/library/alpine:latest"
    assert parse("alpine:3").familiar() == "alpine"
    assert parse("user/app").familiar() == "user/app"
    assert parse("ghcr.io/o/r:t").familiar() == "ghcr.io/o/r"
    assert str(parse(f"h:1/x@{D}")) == f"h:1/x@{D}"
    assert parse("h:1/x").with_digest(Digest.parse(D)).identifier == D
