"""The bottom of the registry client's stack: TLS contexts and the retrying transport.

- ``tls_context``: certs.d directories (docker's and podman's layout) as an ``ssl.SSLContext``;
  ``unverified_context`` for loopback and ``--insecure-registry`` hosts.
- ``RetryTransport``: retries a request on 408/429/5xx and on connection errors, with backoff and
  jitter (``_retry.RetryPolicy``), honouring ``Retry-After``; a TLS failure is never retried.
- ``transport_error``: an httpx transport exception as ocibox's :class:`TransportError`, or
  :class:`TLSError` when an ``ssl.SSLError`` is in its cause chain (httpx wraps them).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable

from ocibox.errors import TLSError, TransportError, UsageError
from ocibox.puller._httpx import httpx
from ocibox.puller._retry import DEFAULT_POLICY, RetryPolicy, is_retryable_status, parse_retry_after

TIMEOUT = httpx.Timeout(connect=15.0, read=60.0, write=60.0, pool=120.0)
USER_AGENT = "ocibox/0.1"


def unverified_context() -> ssl.SSLContext:
    """TLS without verification, for loopback and insecure registries: not httpx's
    ``verify=False``, which loads every CA root first (40 ms)."""
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
        ctx = unverified_context()
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


def verify_for(cert_dir: str | None, verified: bool) -> bool | ssl.SSLContext:
    """httpx's ``verify`` for a host: the system's roots (``True``), a certs.d context, or no
    verification (loopback and insecure hosts, which keep a certs.d directory's client certificates)."""
    if cert_dir is not None:
        return tls_context(cert_dir, verify=verified)
    return True if verified else unverified_context()


def is_tls_failure(exc: BaseException) -> bool:
    """Whether an ``ssl.SSLError`` is in ``exc``'s cause/context chain (httpx raises its own
    ``ConnectError``/``ReadError`` from httpcore's, raised from the ``ssl`` module's)."""
    e: BaseException | None = exc
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, ssl.SSLError):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def transport_error(e: Exception, what: str, url: httpx.URL) -> TransportError:
    """An httpx exception of sending a request, as the error ocibox reports."""
    netloc = url.netloc.decode()
    if isinstance(e, httpx.TimeoutException):
        return TransportError(f"{what}: {url.host}: timed out ({type(e).__name__}); check the network or try again",
                              temporary=True)
    if is_tls_failure(e):
        return TLSError(f"{what}: TLS with {netloc} failed ({e}); trust its CA with /etc/containers/certs.d/"
                        f"{netloc}/ca.crt (or --cert-dir), or pass --insecure-registry {netloc}")
    return TransportError(f"{what}: cannot reach {netloc}: {e or type(e).__name__}", temporary=True)


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
                if is_tls_failure(e):
                    raise  # an untrusted certificate stays untrusted
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
