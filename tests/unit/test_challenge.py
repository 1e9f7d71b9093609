"""WWW-Authenticate parsing, as registries (distribution, Docker Hub, ghcr, quay) send it."""

from __future__ import annotations

import pytest

from ocibox.puller._challenge import Challenge, parse_challenges, pick_challenge


@pytest.mark.parametrize(("header", "expected"), [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
     [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                           "scope": "repository:library/alpine:pull"})]),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    ('basic realm=simple', [Challenge("basic", {"realm": "simple"})]),
    ('Bearer realm="https://ghcr.io/token", service="ghcr.io", scope="repository:o/r:pull"',
     [Challenge("bearer", {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:o/r:pull"})]),
    ('Bearer realm="r",error="insufficient_scope",scope="repository:a:pull repository:b:pull"',
     [Challenge("bearer", {"realm": "r", "error": "insufficient_scope",
                           "scope": "repository:a:pull repository:b:pull"})]),
    ('Basic realm="a, b=c", Bearer realm="x"', [Challenge("basic", {"realm": "a, b=c"}),
                                                  Challenge("bearer", {"realm": "x"})]),
    ('Bearer realm="with \\"quotes\\""', [Challenge("bearer", {"realm": 'with "quotes"'})]),
    ('Negotiate abc==, Basic realm="x"', [Challenge("negotiate", {"token68": "abc=="}),
                                          Challenge("basic", {"realm": "x"})]),
    ('  BEARER   REALM = "x" ', [Challenge("bearer", {"realm": "x"})]),
    ("", []),
])
def test_parse(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_properties() -> None:
    (c,) = parse_challenges('Bearer realm="r",service="s",scope="repository:a:pull  repository:b:pull",error=x')
    assert (c.realm, c.service, c.scopes, c.error) == ("r", "s", ("repository:a:pull", "repository:b:pull"), "x")


def test_pick_prefers_bearer() -> None:
    cs = parse_challenges('Basic realm="a", Bearer realm="b"')
    picked = pick_challenge(cs)
    assert picked is not None and picked.scheme == "bearer"
    assert pick_challenge(parse_challenges("Negotiate abc")) is None
