"""``WWW-Authenticate`` challenges (RFC 7235) as the distribution registries send them.

Pure parsing, no HTTP: ``Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
scope="repository:library/alpine:pull"`` becomes ``Challenge("bearer", {"realm": ..., ...})``.
"""

from __future__ import annotations

import re

from ocibox._record import field, record

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?=\s|,|$)")
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TOKEN}))\s*")
_TOKEN68_RE = re.compile(r"\s*([A-Za-z0-9\-._~+/]+=*)\s*(?=,|$)")


@record
class Challenge:
    """One challenge: ``scheme`` lowercased (``bearer``, ``basic``), ``params`` keys lowercased."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        """Space-separated scopes of the challenge (a later 401 may ask for new ones)."""
        return tuple(s for s in self.params.get("scope", "").split(" ") if s)

    @property
    def error(self) -> str:
        return self.params.get("error", "")


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges in one ``WWW-Authenticate`` value; malformed pieces are skipped.

    Handles several challenges in one header (``Basic realm="x", Bearer realm="y"``),
    quoted strings with escapes and commas inside, and unquoted token values.
    """
    out: list[Challenge] = []
    pos = 0
    n = len(header)
    while pos < n:
        while pos < n and header[pos] in " \t,":
            pos += 1
        m = _SCHEME_RE.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        if not _PARAM_RE.match(header, pos):
            t68 = _TOKEN68_RE.match(header, pos)
            if t68:  # token68 form ('Negotiate abc=='), not a param list
                params["token68"] = t68.group(1)
                pos = t68.end()
        while pos < n:
            pm = _PARAM_RE.match(header, pos)
            if not pm:
                break
            key = pm.group(1).lower()
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            if pm.group(2) is not None:
                value = re.sub(r"\\(.)", r"\1", value)
            params[key] = value
            pos = pm.end()
            if pos < n and header[pos] == ",":
                # Look ahead: "," then either another param (k=v) or a new scheme ("Scheme k=v").
                nxt = pos + 1
                while nxt < n and header[nxt] in " \t":
                    nxt += 1
                if _PARAM_RE.match(header, nxt):
                    pos = nxt
                    continue
                pos = nxt
                break
            else:
                break
        out.append(Challenge(scheme, params))
    return out


def pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    """Bearer wins over Basic (what docker does); other schemes are ignored."""
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None
