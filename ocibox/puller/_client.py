"""The registry client on httpx, in stacked layers (DESIGN.md, style 4):

- ``RetryTransport``: retries a request on 408/429/5xx and on connection errors, with backoff
  and jitter (``_retry.RetryPolicy``), honouring ``Retry-After``; TLS failures are never retried.
- ``RegistryAuth``: an ``httpx.Auth`` flow: 401 challenge -> bearer token (anonymous or with
  credentials, cached per scope until ``expires_in``) or basic auth -> the request again.
  Credentials go only to the registry host they belong to, over the scheme the endpoint uses.
- ``RegistryClient``: manifests (capped at 4 MiB while streaming), small blobs, and
  ``BlobStream``: a blob as a stream that resumes with ``Range`` after a cut, tees to a partial
  file so a later process can resume, and never reads past the descriptor's size.
Redirects are followed by the client itself, so a redirect to another host (blob storage)
never carries an ``Authorization`` header.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO

from ocibox.errors import AuthError, ManifestError, NotFoundError, RegistryError, TransportError, UsageError
from ocibox.image import ACCEPT, MAX_MANIFEST_BYTES, Descriptor
from ocibox.puller._challenge import Challenge, parse_challenges, pick_challenge
from ocibox.puller._creds import Credentials
from ocibox.puller._hosts import is_loopback, schemes
from ocibox.puller._httpx import httpx
from ocibox.puller._retry import DEFAULT_POLICY, RetryPolicy, is_retryable_status, parse_retry_after
from ocibox.settings import Settings

CHUNK = 1 << 20
TIMEOUT = httpx.Timeout(connect=15.0, read=60.0, write=60.0, pool=120.0)
USER_AGENT = "ocibox/0.1"
_REDIRECTS = (301, 302, 303, 307, 308)
#: whole seconds a manifest or config may take to arrive: a body that trickles forever is cut
MANIFEST_DEADLINE = 120.0
_MAX_REDIRECTS = 10


def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_context(cert_dir: str, *, verify: bool = True) -> ssl.SSLContext:
    """The TLS context for a registry with a certs.d directory (docker's and podman's layout): the
    system's roots plus every ``*.crt`` as a CA, and each ``NAME.cert`` with ``NAME.key`` as a client
    certificate. ``verify=False`` (loopback, --insecure-registry) keeps the client certificates only."""
    if verify:
        import certifi

        ctx = ssl.create_default_context(cafile=certifi.where())
    else:
        ctx = _unverified_context()
    try:
        names = sorted(os.listdir(cert_dir))
    except OSError as e:
        raise UsageError(f"certificate directory {cert_dir}: {e.strerror}; give a directory of *.crt files") from None
    for name in names:
        path = os.path.join(cert_dir, name)
        try:
            if name.endswith(".crt"):
                ctx.load_verify_locations(cafile=path)
            elif name.endswith(".cert"):
                key = path[: -len(".cert")] + ".key"
                if not os.path.exists(key):
                    raise UsageError(f"client certificate {path} has no key {key}; put the key beside it")
                ctx.load_cert_chain(path, key)
        except (ssl.SSLError, OSError) as e:
            raise UsageError(f"certificate {path} cannot be loaded ({e}); it must be PEM") from None
    return ctx


def _is_tls_error(exc: BaseException) -> bool:
    e: BaseException | None = exc
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, ssl.SSLError) or "SSL" in str(e) or "certificate" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


class RetryTransport(httpx.BaseTransport):
    """Retries whole requests (their bodies are bytes, so they can be sent again)."""

    def __init__(self, inner: httpx.BaseTransport, policy: RetryPolicy = DEFAULT_POLICY,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None) -> None:
        self.inner = inner
        self.policy = policy
        self.sleep = sleep
        self.log = log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        failures = 0
        while True:
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError as e:
                if _is_tls_error(e):
                    raise
                failures += 1
                if not self.policy.should_retry(failures):
                    raise
                wait = self.policy.delay(failures)
                if self.log:
                    self.log(f"{request.method} {request.url}: {type(e).__name__} {e}; retrying in {wait:.2f}s")
                self.sleep(wait)
                continue
            if not is_retryable_status(response.status_code):
                return response
            failures += 1
            if not self.policy.should_retry(failures):
                return response
            wait = self.policy.delay(failures, parse_retry_after(response.headers.get("retry-after")))
            if self.log:
                self.log(f"{request.method} {request.url}: {response.status_code}; retrying in {wait:.2f}s")
            response.close()
            self.sleep(wait)

    def close(self) -> None:
        self.inner.close()


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

    def _applies(self, request: httpx.Request) -> bool:
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
        if not self._applies(request):
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


def _oci_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an OCI error body, read with a small cap."""
    try:
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > 65536:
                break
        obj = json.loads(data)
        err = obj["errors"][0]
        return str(err.get("code", "")), str(err.get("message", ""))
    except Exception:
        return "", ""


_STATUS_TEXT = {401: "unauthorized", 403: "denied", 404: "not found", 408: "request timeout",
                429: "too many requests", 500: "internal server error", 502: "bad gateway",
                503: "service unavailable", 504: "gateway timeout"}


class RegistryClient:
    """A client for one registry host (the origin or a mirror)."""

    def __init__(self, settings: Settings, host: str, *, creds: Credentials | None = None,
                 lookup_creds: bool = True, policy: RetryPolicy = DEFAULT_POLICY,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.host = host
        self.policy = policy
        self.sleep = sleep
        if creds is None and lookup_creds:
            from ocibox.puller._creds import lookup

            creds = lookup(host)
        self.creds = creds
        self._schemes = schemes(settings, host)
        self._scheme: str | None = None if len(self._schemes) > 1 else self._schemes[0]
        self._auth: RegistryAuth | None = None
        self._lock = threading.Lock()
        self._debug = settings.debug
        # unverified TLS only for loopback/insecure; a certs.d directory adds CAs and client certificates
        verified = len(self._schemes) == 1
        cert_dir = settings.tls_dir(host)
        verify: bool | ssl.SSLContext = verified
        if cert_dir is not None:
            verify = tls_context(cert_dir, verify=verified)
        elif not verified:
            verify = _unverified_context()  # not httpx's verify=False, which loads every CA root (40 ms)
        log = self._log if self._debug else None
        self._http = httpx.Client(
            transport=RetryTransport(httpx.HTTPTransport(verify=verify, retries=0), policy, sleep, log),
            timeout=TIMEOUT, follow_redirects=False, headers={"User-Agent": USER_AGENT},
            event_hooks={"response": [self._log_response]} if self._debug else {},
        )

    def _log(self, msg: str) -> None:
        sys.stderr.write(f"DEBUG http: {msg}\n")

    def _log_response(self, response: httpx.Response) -> None:
        r = response.request
        self._log(f"{r.method} {r.url} -> {response.status_code}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending
    def base_url(self) -> str:
        return f"{self._scheme or self._schemes[0]}://{self.host}"

    def _auth_for(self, scheme: str) -> RegistryAuth:
        with self._lock:
            if self._auth is None or self._auth.scheme != scheme:
                self._auth = RegistryAuth(scheme, self.host, self.creds, len(self._schemes) > 1)
            return self._auth

    def send(self, method: str, path: str, what: str, *, headers: dict[str, str] | None = None,
             url: str | None = None, use_auth: bool = True) -> httpx.Response:
        """Send a request (streamed), following redirects by hand; returns any status.

        ``path`` is relative to the endpoint (``/v2/...``); ``url`` overrides it (foreign
        layers). Connection and TLS failures become :class:`TransportError`.
        """
        if url is not None:
            return self._send_url(method, httpx.URL(url), what, headers, None)
        if self._scheme is not None:
            return self._send_url(method, httpx.URL(f"{self._scheme}://{self.host}{path}"), what, headers,
                                  self._auth_for(self._scheme) if use_auth else None)
        # Loopback / insecure: HTTPS (unverified) first, then plain HTTP; remember what worked.
        last: TransportError | None = None
        for scheme in self._schemes:
            try:
                resp = self._send_url(method, httpx.URL(f"{scheme}://{self.host}{path}"), what, headers,
                                      self._auth_for(scheme) if use_auth else None)
            except TransportError as e:
                last = e
                if scheme == "https" and not getattr(e, "tls", False):
                    break  # nothing listens (or it broke): plain HTTP would not fare better
                continue
            self._scheme = scheme
            return resp
        assert last is not None
        raise last

    def _send_url(self, method: str, url: httpx.URL, what: str, headers: dict[str, str] | None,
                  auth: RegistryAuth | None) -> httpx.Response:
        hdrs = dict(headers or {})
        for _ in range(_MAX_REDIRECTS + 1):
            request = self._http.build_request(method, url, headers=hdrs)
            try:
                response = self._http.send(request, stream=True, auth=auth)
            except httpx.TimeoutException as e:
                raise TransportError(f"{what}: {url.host}: timed out ({type(e).__name__}); check the network or try again",
                                     temporary=True) from None
            except httpx.TransportError as e:
                if _is_tls_error(e):
                    err = TransportError(
                        f"{what}: TLS with {url.netloc.decode()} failed ({e}); trust its CA with "
                        f"/etc/containers/certs.d/{url.netloc.decode()}/ca.crt (or --cert-dir), or pass "
                        f"--insecure-registry {url.netloc.decode()}", temporary=False)
                    err.tls = True  # type: ignore[attr-defined]
                    raise err from None
                raise TransportError(f"{what}: cannot reach {url.netloc.decode()}: {e or type(e).__name__}",
                                     temporary=True) from None
            if response.status_code in _REDIRECTS and "location" in response.headers:
                target = response.url.join(response.headers["location"])
                response.close()
                if target.scheme not in ("http", "https"):
                    raise RegistryError(f"{what}: redirect to unsupported URL {target}")
                url = target
                # Another host (blob storage) or a downgrade: no credentials, ever.
                if auth is not None and not auth._applies(self._http.build_request(method, url)):
                    auth = None
                hdrs.pop("Authorization", None)
                continue
            return response
        raise RegistryError(f"{what}: more than {_MAX_REDIRECTS} redirects")

    def check(self, response: httpx.Response, what: str) -> None:
        """Raise the right :class:`RegistryError` for an unsuccessful response (and close it)."""
        status = response.status_code
        if status < 300:
            return
        code, message = _oci_error(response)
        response.close()
        detail = f"{status} {_STATUS_TEXT.get(status, '')}".strip()
        if code:
            detail += f", {code}" + (f": {message}" if message else "")
        if status == 401:
            raise AuthError(f"{what}: {self.host} requires authentication ({detail}); run 'ocibox login {self.host}'",
                            status=status, code=code)
        if status == 403:
            raise AuthError(f"{what}: access denied by {self.host} ({detail}); check the credentials and the"
                            " repository name", status=status, code=code)
        if status == 404:
            raise NotFoundError(f"{what}: not found on {self.host} ({detail}); check the name, tag or digest",
                                status=status, code=code)
        if is_retryable_status(status):
            raise RegistryError(f"{what}: {self.host} answered {detail} after {self.policy.attempts} attempts;"
                                " try again later", status=status, code=code, temporary=True)
        raise RegistryError(f"{what}: {self.host} answered {detail}", status=status, code=code)

    # ------------------------------------------------------------------ API
    def ping(self) -> httpx.Response:
        """``GET /v2/`` (its body read); the caller looks at status and challenge."""
        resp = self.send("GET", "/v2/", f"registry {self.host}")
        resp.read()
        resp.close()
        return resp

    def get_manifest(self, repository: str, identifier: str, what: str, *,
                     limit: int = MAX_MANIFEST_BYTES) -> tuple[bytes, str, str]:
        """(bytes, Content-Type, Docker-Content-Digest) of a manifest or index, at most ``limit`` bytes."""
        resp = self.send("GET", f"/v2/{repository}/manifests/{identifier}", what, headers={"Accept": ACCEPT})
        self.check(resp, what)
        data = read_capped(resp, limit, what)
        return data, resp.headers.get("content-type", ""), resp.headers.get("docker-content-digest", "")

    def get_blob_bytes(self, repository: str, desc: Descriptor, what: str,
                       limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small blob (config), read whole with a cap; the caller verifies it."""
        if desc.size > limit:
            raise ManifestError(f"{what}: {desc.size} bytes is more than the {limit} bytes allowed")
        resp = self.send("GET", f"/v2/{repository}/blobs/{desc.digest}", what)
        self.check(resp, what)
        return read_capped(resp, min(limit, desc.size), what, kind=DigestMismatchFor(desc))

    def open_blob(self, repository: str, desc: Descriptor, what: str, *, partial: Path | None = None,
                  on_bytes: Callable[[int], None] | None = None) -> BlobStream:
        """The blob as a resumable stream (see :class:`BlobStream`)."""
        return BlobStream(self, repository, desc, what, partial=partial, on_bytes=on_bytes)


class DigestMismatchFor:
    """Marker: exceeding the cap of a blob with known size is a size mismatch, not a manifest error."""

    def __init__(self, desc: Descriptor) -> None:
        self.desc = desc


def read_capped(resp: httpx.Response, limit: int, what: str, kind: DigestMismatchFor | None = None) -> bytes:
    """Read a body but never more than ``limit`` (+1 to notice) bytes: an endless body is cut."""
    from ocibox.errors import DigestMismatch

    def too_big() -> Exception:
        resp.close()
        if kind is not None:
            return DigestMismatch(f"{what}: more bytes than the descriptor's {kind.desc.size}")
        return ManifestError(f"{what}: larger than {limit} bytes; refusing to read it")

    length = resp.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big()
    buf = bytearray()
    deadline = time.monotonic() + MANIFEST_DEADLINE
    try:
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > limit:
                raise too_big()
            if time.monotonic() > deadline:
                raise TransportError(f"{what}: still incomplete after {MANIFEST_DEADLINE:g} s ({len(buf)} bytes);"
                                     " the registry is too slow or broken, try again later", temporary=True)
    except httpx.TransportError as e:
        raise TransportError(f"{what}: connection failed while reading: {e}", temporary=True) from None
    finally:
        resp.close()
    return bytes(buf)


class BlobStream:
    """A blob as a stream with ``read(n)``; resumes with ``Range`` after a broken connection.

    - Serves the bytes of a ``partial`` file (an earlier, interrupted download of the same blob)
      first, then asks the registry for the rest with ``Range: bytes=N-``.
    - Tees what comes from the network to ``partial`` so a later process can resume.
    - Never reads past ``desc.size`` (+1 byte, to notice a longer stream); the caller wraps it in
      a ``VerifyingReader`` which checks size and digest at EOF over all the bytes.
    - Foreign layers: the descriptor's ``urls`` are tried first, without credentials.
    """

    def __init__(self, client: RegistryClient, repository: str, desc: Descriptor, what: str, *,
                 partial: Path | None = None, on_bytes: Callable[[int], None] | None = None) -> None:
        self.client = client
        self.repository = repository
        self.desc = desc
        self.what = what
        self.on_bytes = on_bytes
        self.pos = 0
        self.resumed_from = 0  # bytes taken from the partial file
        self.ranges: list[int] = []  # offsets of Range requests made (for tests and the debug log)
        self._buf = b""
        self._resp: httpx.Response | None = None
        self._iter: Iterator[bytes] | None = None
        self._failures = 0
        self._partial_in: IO[bytes] | None = None
        self._tee: IO[bytes] | None = None
        self.partial = partial
        if partial is not None:
            try:
                size = partial.stat().st_size
            except FileNotFoundError:
                size = -1
            if size > desc.size:
                partial.unlink()
                size = -1
            if size > 0:
                self._partial_in = open(partial, "rb")  # noqa: SIM115 - closed in close()/read()
                self.resumed_from = size
            self._tee = open(partial, "ab")  # noqa: SIM115 - closed in close()
        self._sources = [u for u in desc.urls if u.startswith(("http://", "https://"))]

    # ------------------------------------------------------------------ network
    def _open(self) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self.pos:
            headers["Range"] = f"bytes={self.pos}-"
            self.ranges.append(self.pos)
        errors: list[str] = []
        for url in self._sources:
            try:
                resp = self.client.send("GET", "", self.what, headers=headers, url=url, use_auth=False)
            except TransportError as e:
                errors.append(str(e))
                continue
            if resp.status_code in (200, 206):
                self._accept(resp)
                return
            errors.append(f"{url}: {resp.status_code}")
            resp.close()
        resp = self.client.send("GET", f"/v2/{self.repository}/blobs/{self.desc.digest}", self.what,
                                headers=headers)
        self.client.check(resp, self.what + (f" (foreign URLs failed: {'; '.join(errors)})" if errors else ""))
        self._accept(resp)

    def _accept(self, resp: httpx.Response) -> None:
        self._resp = resp
        self._iter = resp.iter_raw()
        if self.pos and resp.status_code == 200:
            # The server ignored Range: skip what we already have.
            skip = self.pos
            while skip > 0:
                chunk = next(self._iter, b"")
                if not chunk:
                    break
                if len(chunk) > skip:
                    self._buf = chunk[skip:]
                    skip = 0
                else:
                    skip -= len(chunk)
        elif self.pos and resp.status_code == 206:
            cr = resp.headers.get("content-range", "")
            start = cr.removeprefix("bytes ").split("-")[0]
            if not start.isdigit() or int(start) != self.pos:
                resp.close()
                raise RegistryError(f"{self.what}: asked for bytes from {self.pos}, got range {cr!r}")

    def _close_resp(self) -> None:
        if self._resp is not None:
            with contextlib.suppress(Exception):
                self._resp.close()
        self._resp = None
        self._iter = None

    def _next_chunk(self) -> bytes:
        while True:
            if self._iter is None:
                self._open()
            assert self._iter is not None
            try:
                chunk = next(self._iter, b"")
                if chunk or self.pos >= self.desc.size:
                    return chunk
                why = "the body ended early"
            except httpx.TransportError as e:
                why = type(e).__name__
            # Cut mid-body: back off and resume from where we are.
            self._close_resp()
            self._failures += 1
            if not self.client.policy.should_retry(self._failures):
                raise TransportError(
                    f"{self.what}: connection broke after {self.pos} of {self.desc.size} bytes"
                    f" ({why}), {self._failures} times; try again later (the download resumes)",
                    temporary=True) from None
            self.client.sleep(self.client.policy.delay(self._failures))

    # ------------------------------------------------------------------ reader
    def read(self, n: int = -1, /) -> bytes:
        if n < 0:
            n = CHUNK
        if self._partial_in is not None:
            data = self._partial_in.read(min(n, self.resumed_from - self.pos))
            if data:
                self.pos += len(data)
                if self.on_bytes:
                    self.on_bytes(len(data))
                return data
            self._partial_in.close()
            self._partial_in = None
        if not self._buf:
            # at the end: one read past the size is allowed, to notice a longer stream
            if self.pos >= self.desc.size and self._iter is None:
                return b""
            self._buf = self._next_chunk()
            if not self._buf:
                return b""
        data, self._buf = self._buf[:n], self._buf[n:]
        self.pos += len(data)
        if self._tee is not None:
            try:
                self._tee.write(data)
            except OSError as e:
                from ocibox.store import disk_error

                raise disk_error(e, f"{self.what}: saving the download") from None
        if self.on_bytes:
            self.on_bytes(len(data))
        return data

    def close(self) -> None:
        self._close_resp()
        for f in (self._partial_in, self._tee):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._partial_in = self._tee = None

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

