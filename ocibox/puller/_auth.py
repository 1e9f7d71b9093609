"""Registry auth as an ``httpx.Auth`` flow (DESIGN.md, style 4): 401 challenge -> bearer token
(anonymous or with credentials, cached per scope until ``expires_in``) or basic auth -> the request
again. Credentials go only to the registry host they belong to, over the scheme the endpoint uses;
a token realm gets them only over HTTPS (or plain HTTP on loopback and insecure registries, and
never after the registry itself was reached over HTTPS).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator

from ocibox.errors import AuthError
from ocibox.puller._challenge import Challenge, parse_challenges, pick_challenge
from ocibox.puller._creds import Credentials
from ocibox.puller._hosts import is_loopback
from ocibox.puller._httpx import httpx
from ocibox.puller._retry import is_retryable_status
from ocibox.puller._transport import USER_AGENT


def _scope_for(path: str) -> str:
    """``/v2/<name>/(manifests|blobs|tags)/...`` -> ``repository:<name>:pull``; ``/v2/`` -> ''."""
    if not path.startswith("/v2/"):
        return ""
    rest = path[4:]
    for marker in ("/manifests/", "/blobs/", "/tags/"):
        i = rest.rfind(marker)
        if i > 0:
            return f"repository:{rest[:i]}:pull"
    return ""


class RegistryAuth(httpx.Auth):
    """Auth for one registry endpoint (``scheme://host``); other hosts pass through untouched."""

    requires_response_body = False

    def __init__(self, scheme: str, host: str, creds: Credentials | None, may_use_http: bool) -> None:
        self.scheme = scheme
        self.host = host
        self.creds = creds
        self.may_use_http = may_use_http
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expiry)
        self._challenge: Challenge | None = None
        self._basic = False
        self.token_requests = 0

    def applies(self, request: httpx.Request) -> bool:
        url = request.url
        netloc = url.netloc.decode("ascii")
        return url.scheme == self.scheme and netloc == self.host

    def _basic_header(self) -> str:
        assert self.creds is not None
        return httpx.BasicAuth(self.creds.username, self.creds.password)._auth_header

    def _cached(self, scope: str) -> str | None:
        with self._lock:
            hit = self._tokens.get(scope)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        return None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self.applies(request):
            request.headers.pop("Authorization", None)
            yield request
            return
        scope = _scope_for(request.url.path)
        if self._basic and self.creds and self.creds.username:
            request.headers["Authorization"] = self._basic_header()
        elif (token := self._cached(scope)) is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        elif self._challenge is not None and self._challenge.scheme == "bearer":
            # We know the token service: fetch the token first instead of taking a 401.
            token_response = yield self._token_request(self._challenge, [scope] if scope else [])
            request.headers["Authorization"] = f"Bearer {self._take_token(token_response, self._challenge, scope)}"
        response = yield request
        if response.status_code != 401:
            return
        challenge = pick_challenge(parse_challenges(response.headers.get("www-authenticate", "")))
        if challenge is None:
            return
        if challenge.scheme == "basic":
            if not self.creds or not self.creds.username or self._basic:
                return
            self._basic = True
            request.headers["Authorization"] = self._basic_header()
            yield request
            return
        self._challenge = challenge
        scopes = list(dict.fromkeys(([scope] if scope else []) + list(challenge.scopes)))
        token_response = yield self._token_request(challenge, scopes)
        request.headers["Authorization"] = f"Bearer {self._take_token(token_response, challenge, scope)}"
        yield request

    def _realm_gets_credentials(self, realm: httpx.URL) -> bool:
        """Never send credentials to a token realm over plain HTTP (loopback and insecure
        registries excepted), nor over HTTP when the registry itself is reached over HTTPS."""
        if realm.scheme == "https":
            return True
        if realm.scheme != "http" or self.scheme == "https":
            return False
        return is_loopback(realm.netloc.decode("ascii")) or self.may_use_http

    def _token_request(self, challenge: Challenge, scopes: list[str]) -> httpx.Request:
        try:
            realm = httpx.URL(challenge.realm)
        except httpx.InvalidURL:
            raise AuthError(f"registry {self.host}: token realm {challenge.realm!r} is not a URL") from None
        if realm.scheme not in ("http", "https") or not realm.host:
            raise AuthError(f"registry {self.host}: token realm {challenge.realm!r} is not an http(s) URL")
        self.token_requests += 1
        creds = self.creds if self._realm_gets_credentials(realm) else None
        headers = {"User-Agent": USER_AGENT}
        if creds and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": challenge.service, "client_id": "ocibox", "scope": " ".join(scopes)}
            return httpx.Request("POST", realm, data=form, headers=headers)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params += [("scope", s) for s in scopes]
        if creds and creds.username:
            params.append(("account", creds.username))
            headers["Authorization"] = httpx.BasicAuth(creds.username, creds.password)._auth_header
        return httpx.Request("GET", realm.copy_merge_params(params), headers=headers)

    def _take_token(self, response: httpx.Response, challenge: Challenge, scope: str) -> str:
        response.read()
        realm = challenge.realm
        if response.status_code in (401, 403):
            who = "the credentials" if self.creds else "anonymous access"
            raise AuthError(f"registry {self.host}: token service {realm} rejected {who} ({response.status_code});"
                            f" run 'ocibox login {self.host}'", status=response.status_code)
        if response.status_code != 200:
            raise AuthError(f"registry {self.host}: token service {realm} answered {response.status_code}",
                            status=response.status_code, temporary=is_retryable_status(response.status_code))
        try:
            obj = json.loads(response.content)
            token = obj.get("token") or obj.get("access_token")
            expires = obj.get("expires_in", 60)
        except (ValueError, AttributeError):
            raise AuthError(f"registry {self.host}: token service {realm} did not answer with JSON") from None
        if not isinstance(token, str) or not token:
            raise AuthError(f"registry {self.host}: token service {realm} gave no token")
        if not isinstance(expires, int | float) or expires <= 0:
            expires = 60
        # renew a little early; at least 60 s (the distribution spec's minimum)
        lifetime = max(float(expires), 60.0) - 10.0
        with self._lock:
            self._tokens[scope] = (token, time.monotonic() + lifetime)
        return token
