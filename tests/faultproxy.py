"""A scripted fault-injecting reverse proxy on loopback, between ocibox and the real registry.

This is a fake for faults only: every byte it serves comes from the real registry (Debian's
docker-registry) unless a rule says otherwise. Nothing here uses ocibox code.

- One listener per :class:`FaultProxy`, on any 127.0.0.0/8 address. With ``tls=True`` it sniffs
  the first byte of each connection: a TLS ClientHello is answered over TLS (a self-signed cert
  made with the ``openssl`` command), anything else as plain HTTP, so ``https://H:P`` and
  ``http://H:P`` are the same host and port (the downgrade case).
- :class:`Rule`: per method and path regex, ``times`` times, one action: ``status`` (with
  headers, e.g. ``Retry-After``), ``reset`` (forward, then a TCP RST after ``at`` body bytes),
  ``cut`` (forward ``at`` body bytes then close cleanly, Content-Length promising more),
  ``trickle`` (``chunk`` bytes every ``delay`` s), ``stall`` (``at`` bytes then silence for
  ``delay`` s), ``longer`` (the body plus ``extra`` bytes, Content-Length to match), ``flip``
  (the byte at blob offset ``at`` inverted), ``endless`` (a chunked body that never ends; with
  ``delay`` a slow one), ``redirect`` (307 to ``location``, ``{path}`` replaced).
- Auth emulation (a fake, since the registry itself runs without auth here): ``require_basic``
  demands those credentials on ``/v2/`` paths; ``require_bearer`` answers 401 with a Bearer
  challenge naming ``realm`` and accepts only tokens a :class:`TokenServer` issued. Paths under
  ``/storage/`` are served without auth, as blob storage behind a redirect would (signed URL).
- Every request is recorded with its headers and the body bytes sent, for the credential and
  re-download checks; :data:`TALLY` counts faults injected and outcomes over the session.
"""

from __future__ import annotations

import base64
import http.server
import re
import secrets
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-authenticate", "host", "content-length"}


@dataclass
class Tally:
    """Session figures for the closing note of the fault work."""

    injected: int = 0
    recovered: int = 0
    failed_cleanly: int = 0
    redownloaded: int = 0
    scenarios: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def hit(self) -> None:
        with self._lock:
            self.injected += 1

    def lines(self) -> list[str]:
        return [f"faults injected: {self.injected}",
                f"scenarios retried and recovered: {self.recovered}",
                f"scenarios failed cleanly (one-line error, nothing published, clean re-pull): {self.failed_cleanly}",
                f"bytes re-downloaded over all scenarios: {self.redownloaded}"]


TALLY = Tally()


@dataclass
class Rule:
    path: str
    action: str
    times: int = 1
    method: str = "GET"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    at: int = 0
    extra: int = 0
    chunk: int = 65536
    delay: float = 0.0
    location: str = ""
    hits: int = 0


@dataclass
class Seen:
    scheme: str
    method: str
    path: str
    headers: dict[str, str]
    sent: int = 0  # body bytes written to the client
    rule: str = ""
    t: float = field(default_factory=time.monotonic)


def self_signed(workdir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """(cert, key) for ``host``, made with the openssl command."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "proxy.crt", workdir / "proxy.key"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-subj", f"/CN={host}", "-days", "2",
                        "-addext", f"subjectAltName=IP:{host}"], check=True, capture_output=True)
    return cert, key


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.owner.handle(self)  # type: ignore[attr-defined]

    do_HEAD = do_GET
    do_POST = do_GET


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None
    owner: FaultProxy

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock = request
        if self.tls is not None:
            try:
                sock.settimeout(10)
                first = sock.recv(1, socket.MSG_PEEK)
                sock.settimeout(None)
            except OSError:
                return
            if first == b"\x16":
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return
        try:
            self.RequestHandlerClass(sock, client_address, self)
        finally:
            if sock is not request:
                try:
                    sock.close()
                except OSError:
                    pass


class FaultProxy:
    """A reverse proxy in front of ``upstream`` (``host:port`` of the plain-HTTP registry)."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", *, tls: tuple[Path, Path] | None = None) -> None:
        self.upstream = upstream
        self.httpd = _HTTPServer((host, 0), _Handler)
        self.httpd.owner = self
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.tls = ctx
        self.host = f"{host}:{self.httpd.server_address[1]}"
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.require_basic: tuple[str, str] | None = None
        self.require_bearer: tuple[str, TokenServer] | None = None  # (realm URL, issuer)
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=60)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._client.close()

    def add(self, path: str, action: str, **kw: Any) -> Rule:
        rule = Rule(path, action, **kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.seen.clear()

    def _match(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for r in self.rules:
                if r.hits < r.times and r.method == method and re.search(r.path, path):
                    r.hits += 1
                    TALLY.hit()
                    return r
        return None

    # ------------------------------------------------------------------ queries
    def requests(self, pattern: str = "", method: str = "GET") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and re.search(pattern, s.path)]

    def sent(self, pattern: str) -> int:
        """Body bytes served for GETs of paths matching ``pattern``."""
        return sum(s.sent for s in self.requests(pattern))

    # ------------------------------------------------------------------ serving
    def _auth_ok(self, h: _Handler) -> bool:
        auth = h.headers.get("Authorization", "")
        if self.require_basic is not None:
            want = "Basic " + base64.b64encode(":".join(self.require_basic).encode()).decode()
            if auth == want:
                return True
            _send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                  {"WWW-Authenticate": 'Basic realm="faultproxy"', "Content-Type": "application/json"})
            return False
        if self.require_bearer is not None:
            realm, issuer = self.require_bearer
            if auth.startswith("Bearer ") and auth[7:] in issuer.issued:
                return True
            scope = ""
            m = re.match(r"/v2/(.+)/(manifests|blobs)/", h.path)
            if m:
                scope = f',scope="repository:{m.group(1)}:pull"'
            _send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                  {"WWW-Authenticate": f'Bearer realm="{realm}",service="faultproxy"{scope}',
                   "Content-Type": "application/json"})
            return False
        return True

    def handle(self, h: _Handler) -> None:
        scheme = "https" if isinstance(h.connection, ssl.SSLSocket) else "http"
        seen = Seen(scheme, h.command, h.path, {k: v for k, v in h.headers.items()})
        with self._lock:
            self.seen.append(seen)
        path = h.path
        storage = path.startswith("/storage/")
        if storage:
            path = path[len("/storage"):]
        elif path.startswith("/v2/") and not self._auth_ok(h):
            return
        rule = self._match(h.command, h.path)
        seen.rule = rule.action if rule else ""
        if rule is not None:
            if rule.action == "status":
                _send(h, rule.status, b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}',
                      {"Content-Type": "application/json", **rule.headers})
                return
            if rule.action == "redirect":
                _send(h, 307, b"", {"Location": rule.location.replace("{path}", path)})
                return
            if rule.action == "endless":
                self._endless(h, rule, seen)
                return
        self._forward(h, path, rule, seen)

    def _endless(self, h: _Handler, rule: Rule, seen: Seen) -> None:
        h.send_response(200)
        for k, v in rule.headers.items():
            h.send_header(k, v)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        piece = b"{" + b" " * (rule.chunk - 1)
        try:
            for _ in range(1_000_000):
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                h.wfile.flush()
                seen.sent += len(piece)
                piece = b" " * rule.chunk
                if rule.delay:
                    time.sleep(rule.delay)
        except OSError:
            pass
        h.close_connection = True

    def _forward(self, h: _Handler, path: str, rule: Rule | None, seen: Seen) -> None:
        fwd = {k: v for k, v in h.headers.items() if k.lower() not in _HOP and k.lower() != "authorization"}
        req = self._client.build_request(h.command, f"http://{self.upstream}{path}", headers=fwd)
        resp = self._client.send(req, stream=True)
        try:
            body_iter = resp.iter_raw()
            length = resp.headers.get("content-length")
            start = 0
            cr = resp.headers.get("content-range", "")
            if cr.startswith("bytes ") and cr[6:].split("-")[0].isdigit():
                start = int(cr[6:].split("-")[0])
            if rule is not None and rule.action == "longer" and length is not None:
                length = str(int(length) + rule.extra)
            h.send_response(resp.status_code)
            for k, v in resp.headers.items():
                if k.lower() not in _HOP:
                    h.send_header(k, v)
            if length is not None:
                h.send_header("Content-Length", length)
            else:
                h.close_connection = True
            h.end_headers()
            if h.command == "HEAD":
                return
            pos = start
            for data in body_iter:
                if rule is not None and rule.action == "flip" and pos <= rule.at < pos + len(data):
                    b = bytearray(data)
                    b[rule.at - pos] ^= 0xFF
                    data = bytes(b)
                if rule is not None and rule.action in ("reset", "cut", "stall") and \
                        seen.sent + len(data) >= rule.at:
                    k = rule.at - seen.sent
                    h.wfile.write(data[:k])
                    h.wfile.flush()
                    seen.sent += k
                    if rule.action == "stall":
                        time.sleep(rule.delay)
                    h.close_connection = True
                    if rule.action == "reset":
                        # SO_LINGER 0: the close sends RST instead of FIN
                        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        h.connection.close()
                    else:
                        try:
                            h.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    return
                if rule is not None and rule.action == "trickle":
                    for i in range(0, len(data), rule.chunk):
                        h.wfile.write(data[i:i + rule.chunk])
                        h.wfile.flush()
                        seen.sent += len(data[i:i + rule.chunk])
                        time.sleep(rule.delay)
                else:
                    h.wfile.write(data)
                    seen.sent += len(data)
                pos += len(data)
            if rule is not None and rule.action == "longer":
                h.wfile.write(b"\0" * rule.extra)
                seen.sent += rule.extra
        except OSError:
            h.close_connection = True
        finally:
            resp.close()


def _send(h: _Handler, status: int, body: bytes, headers: dict[str, str]) -> None:
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


class _TokenHandler(_Handler):
    def do_GET(self) -> None:
        self.server.owner.handle(self)  # type: ignore[attr-defined]

    do_POST = do_GET


class TokenServer:
    """A token service on a loopback host (``http`` or, with ``tls``, ``https``): answers any
    request with a fresh random token and records the request's headers and query."""

    def __init__(self, host: str = "127.0.0.3", *, tls: tuple[Path, Path] | None = None) -> None:
        self.httpd = _HTTPServer((host, 0), _TokenHandler)
        self.httpd.owner = self  # type: ignore[assignment]
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.tls = ctx
            self.scheme = "https"
        self.host = f"{host}:{self.httpd.server_address[1]}"
        self.issued: set[str] = set()
        self.seen: list[Seen] = []
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"{self.scheme}://{self.host}/token"

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, h: _Handler) -> None:
        scheme = "https" if isinstance(h.connection, ssl.SSLSocket) else "http"
        if h.command == "POST":
            h.rfile.read(int(h.headers.get("Content-Length", "0")))
        self.seen.append(Seen(scheme, h.command, h.path, {k: v for k, v in h.headers.items()}))
        if scheme != self.scheme:
            _send(h, 400, b"wrong scheme", {})
            return
        tok = secrets.token_hex(16)
        self.issued.add(tok)
        _send(h, 200, b'{"token":"%s","expires_in":300}' % tok.encode(), {"Content-Type": "application/json"})

    def queries(self) -> list[dict[str, list[str]]]:
        return [parse_qs(urlsplit(s.path).query) for s in self.seen]
