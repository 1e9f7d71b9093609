"""Retry policy: what is temporary, backoff with jitter, Retry-After, bounds; the retrying
transport driven by a scripted inner transport (a fake: faults on demand, no network); and how a
transport failure becomes ocibox's error (TLS told by the ssl.SSLError in its cause chain)."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from ocibox.errors import TLSError, TransportError
from ocibox.puller._retry import RetryPolicy, is_retryable_status, parse_retry_after
from ocibox.puller._transport import RetryTransport, is_tls_failure, transport_error


@pytest.mark.parametrize(("status", "retry"), [
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (599, True),
    (200, False), (206, False), (301, False), (400, False), (401, False), (403, False), (404, False),
    (501, False), (505, False),
])
def test_retryable_status(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    got = parse_retry_after(date, now=now)
    assert got is not None and 28 <= got <= 31


def test_backoff_grows_bounded_with_jitter() -> None:
    p = RetryPolicy(attempts=6, base=0.5, max_delay=3.0)
    lo = [p.delay(k, rand=lambda a, b: a) for k in range(1, 7)]
    hi = [p.delay(k, rand=lambda a, b: b) for k in range(1, 7)]
    assert hi == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert lo == [h / 2 for h in hi]
    for k in range(1, 7):  # the real random jitter stays in [d/2, d]
        d = p.delay(k)
        assert hi[k - 1] / 2 <= d <= hi[k - 1]


def test_retry_after_wins_but_is_capped() -> None:
    p = RetryPolicy(base=0.1, max_retry_after=5.0)
    assert p.delay(1, retry_after=2.0, rand=lambda a, b: b) == 2.0
    assert p.delay(1, retry_after=100.0, rand=lambda a, b: b) == 5.0
    assert p.delay(1, retry_after=0.0, rand=lambda a, b: b) == 0.1


def test_attempts_bound() -> None:
    p = RetryPolicy(attempts=3)
    assert [p.should_retry(f) for f in (1, 2, 3, 4)] == [True, True, False, False]


class Script(httpx.BaseTransport):
    """Answers from a script: ints are statuses, exceptions are raised."""

    def __init__(self, script: list[object]) -> None:
        self.script = list(script)
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        status, headers = item if isinstance(item, tuple) else (item, {})
        return httpx.Response(status, headers=headers, request=request)


def _run(script: list[object], attempts: int = 4) -> tuple[int | Exception, Script, list[float]]:
    waits: list[float] = []
    inner = Script(script)
    t = RetryTransport(inner, RetryPolicy(attempts=attempts, base=0.01), sleep=waits.append)
    req = httpx.Request("GET", "http://127.0.0.1:1/v2/")
    try:
        return t.handle_request(req).status_code, inner, waits
    except Exception as e:
        return e, inner, waits


def test_transport_retries_then_succeeds() -> None:
    status, inner, waits = _run([503, (429, {"Retry-After": "1"}), httpx.ConnectError("refused"), 200])
    assert status == 200 and inner.calls == 4
    assert len(waits) == 3 and waits[1] == 1.0


def test_transport_gives_up_with_last_answer() -> None:
    status, inner, waits = _run([500, 500, 500, 500, 200], attempts=4)
    assert status == 500 and inner.calls == 4 and len(waits) == 3


def test_transport_does_not_retry_client_errors_or_tls() -> None:
    status, inner, _ = _run([404, 200])
    assert status == 404 and inner.calls == 1
    import ssl

    err = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    err.__cause__ = ssl.SSLError("certificate verify failed")
    result, inner, waits = _run([err, 200])
    assert isinstance(result, httpx.ConnectError) and inner.calls == 1 and waits == []


def test_transport_connection_errors_exhaust() -> None:
    result, inner, waits = _run([httpx.ConnectError("refused")] * 5, attempts=3)
    assert isinstance(result, httpx.ConnectError) and inner.calls == 3 and len(waits) == 2


def _wrapped(outer: Exception, *chain: BaseException) -> Exception:
    """``outer`` raised from ``chain[0]``, raised from ``chain[1]``... (as httpx raises from httpcore)."""
    e: BaseException = outer
    for inner in chain:
        e.__cause__ = inner
        e = inner
    return outer


def test_tls_is_told_by_the_ssl_error_in_the_chain_not_by_words() -> None:
    import ssl

    deep = _wrapped(httpx.ReadError("read failed"), ConnectionError("httpcore's"), ssl.SSLEOFError("eof"))
    assert is_tls_failure(deep)
    implicit = httpx.ConnectError("connect failed")
    implicit.__context__ = ssl.SSLCertVerificationError("self-signed certificate")
    assert is_tls_failure(implicit)
    # words alone are not a TLS failure (a proxy's error page, a host named ssl.example)
    worded = httpx.ConnectError("[SSL] certificate expired says the proxy at ssl.example")
    assert not is_tls_failure(worded)
    result, inner, waits = _run([worded, 200])
    assert result == 200 and inner.calls == 2 and len(waits) == 1  # retried: not TLS
    result, inner, waits = _run([deep, 200])
    assert result is deep and inner.calls == 1 and waits == []  # never retried


def test_transport_errors_become_ocibox_errors() -> None:
    import ssl

    url = httpx.URL("https://reg.example:5000/v2/")
    tls = transport_error(_wrapped(httpx.ConnectError("x"), ssl.SSLCertVerificationError("unknown ca")), "pull a", url)
    assert type(tls) is TLSError and not tls.temporary
    assert str(tls).startswith("pull a: TLS with reg.example:5000 failed")
    assert "/etc/containers/certs.d/reg.example:5000/ca.crt" in str(tls) and "--insecure-registry reg.example:5000" in str(tls)
    refused = transport_error(httpx.ConnectError("Connection refused"), "pull a", url)
    assert type(refused) is TransportError and refused.temporary
    assert str(refused) == "pull a: cannot reach reg.example:5000: Connection refused"
    slow = transport_error(httpx.ReadTimeout("timed out"), "pull a", url)
    assert type(slow) is TransportError and slow.temporary and "timed out (ReadTimeout)" in str(slow)
