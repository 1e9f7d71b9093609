"""The fakes of the pull tests, on loopback: a scripted fault-injecting reverse proxy between ocibox
and the real registry, a token server, a file server, and self-signed certificates. Nothing here
uses ocibox code.

- :class:`FaultProxy`: a reverse proxy in front of ``upstream`` (Debian's docker-registry); every
  byte it serves comes from there unless a rule says otherwise. One listener on any 127.0.0.0/8
  address. With ``tls`` it sniffs the first byte of each connection: a TLS ClientHello is answered
  over TLS (a self-signed cert made with the ``openssl`` command), anything else as plain HTTP, so
  ``https://H:P`` and ``http://H:P`` are the same host and port (the downgrade case).
- :class:`Rule`: per method and path regex, ``times`` times, one action: ``status`` (with
  headers, e.g. ``Retry-After``), ``body`` (200 with ``body`` and ``headers``), ``headers``
  (forward, with these response headers instead of the registry's), ``reset`` (forward, then a TCP
  RST after ``at`` body bytes), ``cut`` (forward ``at`` body bytes then close cleanly,
  Content-Length promising more), ``trickle`` (``chunk`` bytes every ``delay`` s), ``stall`` (``at``
  bytes then silence for ``delay`` s), ``longer`` (the body plus ``extra`` bytes, Content-Length to
  match), ``flip`` (the byte at blob offset ``at`` inverted), ``endless`` (a chunked body that never
  ends; with ``delay`` a slow one), ``redirect`` (307 to ``location``, ``{path}`` replaced by the
  request's path and ``{digest}`` by its last segment).
- Auth: by default the client's ``Authorization`` goes through to the upstream (a registry with
  auth of its own). Or the proxy does the auth (the upstream runs without): ``require_basic``
  demands those credentials on ``/v2/`` paths; ``require_bearer`` answers 401 with a Bearer
  challenge naming ``realm`` and accepts only tokens a :class:`TokenServer` issued. Paths under
  ``/storage/`` are served without auth, as blob storage behind a redirect would (signed URL).
- :class:`TokenServer`: docker's token protocol. Tokens are RS256 JWTs signed with a key made by
  ``openssl``, so a real registry with ``auth: token`` trusts them (:meth:`TokenServer.registry_auth`),
  and each is remembered, so the proxy's bearer emulation accepts them too.
- :class:`FileServer`: bytes by path (blob storage behind a redirect, a vendor's download site).
- Every request each of them gets is recorded (:class:`Seen`: headers, query, body bytes sent,
  start and end); :data:`TALLY` counts faults injected and outcomes over the session.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time
import uuid
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
    body: bytes = b""
    at: int = 0
    extra: int = 0
    chunk: int = 65536
    delay: float = 0.0
    location: str = ""
    hits: int = 0


@dataclass
class Seen:
    """One request: ``query`` holds the URL's parameters and a form body's; ``sent`` the body
    bytes written back; ``t`` and ``end`` when it came and when its answer was done."""

    scheme: str
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, list[str]] = field(default_factory=dict)
    sent: int = 0
    rule: str = ""
    t: float = field(default_factory=time.monotonic)
    end: float = 0.0

    @property
    def authorization(self) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == "authorization"), "")


def self_signed(workdir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """(cert, key) for ``host``, made with the openssl command."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "proxy.crt", workdir / "proxy.key"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-subj", f"/CN={host}", "-days", "2",
                        "-addext", f"subjectAltName=IP:{host}"], check=True, capture_output=True)
    return cert, key


# ---------------------------------------------------------------------------------- servers
class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner: _Server = self.server.owner  # type: ignore[attr-defined]
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        seen = Seen(scheme, self.command, self.path, {k: v for k, v in self.headers.items()},
                    parse_qs(urlsplit(self.path).query))
        if self.command == "POST":
            form = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.query.update(parse_qs(form.decode()))
        with owner.lock:
            owner.seen.append(seen)
        try:
            owner.handle(self, seen)
        finally:
            seen.end = time.monotonic()

    do_HEAD = do_GET
    do_POST = do_GET

    def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


#: sockets of the fakes, closed in a child forked by the tests' process (the puller forks its
#: unpackers): with a copy of a connection left open there, closing it here would neither send a
#: reset nor end the body, as it does when the server is a process of its own.
_OPEN: set[socket.socket] = set()


def _close_in_child() -> None:
    for s in list(_OPEN):
        with contextlib.suppress(OSError):
            fd = s.detach()
            if fd >= 0:
                os.close(fd)
    _OPEN.clear()


os.register_at_fork(after_in_child=_close_in_child)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None
    owner: _Server

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock = request
        _OPEN.add(sock)
        try:
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
                    _OPEN.add(sock)
            try:
                self.RequestHandlerClass(sock, client_address, self)
            finally:
                if sock is not request:
                    with contextlib.suppress(OSError):
                        sock.close()
        finally:
            _OPEN.discard(sock)
            _OPEN.discard(request)


class _Server:
    """A threading HTTP server on ``host`` (any 127.0.0.0/8 address) in a daemon thread; with
    ``tls``, TLS and plain HTTP on the same port. Records every request in ``seen``."""

    def __init__(self, host: str, tls: tuple[Path, Path] | None) -> None:
        self.httpd = _HTTPServer((host, 0), _Handler)
        self.httpd.owner = self
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.tls = ctx
            self.scheme = "https"
        self.host = f"{host}:{self.httpd.server_address[1]}"
        _OPEN.add(self.httpd.socket)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        _OPEN.discard(self.httpd.socket)

    def handle(self, h: _Handler, seen: Seen) -> None:
        raise NotImplementedError

    def requests(self, pattern: str = "", method: str = "GET") -> list[Seen]:
        """Requests of ``method`` whose path matches the regex ``pattern``."""
        with self.lock:
            return [s for s in self.seen if s.method == method and re.search(pattern, s.path)]


# ---------------------------------------------------------------------------------- fault proxy
class FaultProxy(_Server):
    """A reverse proxy in front of ``upstream`` (``host:port`` of the plain-HTTP registry)."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", *, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(host, tls)
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.require_basic: tuple[str, str] | None = None
        self.require_bearer: tuple[str, TokenServer] | None = None  # (realm URL, issuer)
        self._client = httpx.Client(timeout=60)

    def start(self) -> FaultProxy:
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self._client.close()

    def add(self, path: str, action: str, **kw: Any) -> Rule:
        rule = Rule(path, action, **kw)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.seen.clear()

    def _match(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for r in self.rules:
                if r.hits < r.times and r.method == method and re.search(r.path, path):
                    r.hits += 1
                    TALLY.hit()
                    return r
        return None

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
            h.send_body(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
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
            h.send_body(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                        {"WWW-Authenticate": f'Bearer realm="{realm}",service="{issuer.service}"{scope}',
                         "Content-Type": "application/json"})
            return False
        return True

    def handle(self, h: _Handler, seen: Seen) -> None:
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
                h.send_body(rule.status, b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}',
                            {"Content-Type": "application/json", **rule.headers})
                return
            if rule.action == "body":
                h.send_body(200, rule.body, rule.headers)
                seen.sent += len(rule.body)
                return
            if rule.action == "redirect":
                location = rule.location.replace("{path}", path).replace("{digest}", path.rsplit("/", 1)[1])
                h.send_body(307, b"", {"Location": location})
                return
            if rule.action == "endless":
                self._endless(h, rule, seen)
                return
        # The proxy doing auth itself (the upstream has none): the credentials stay here.
        own_auth = self.require_basic is not None or self.require_bearer is not None
        self._forward(h, path, rule, seen, keep_auth=not own_auth)

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

    def _forward(self, h: _Handler, path: str, rule: Rule | None, seen: Seen, keep_auth: bool) -> None:
        fwd = {k: v for k, v in h.headers.items()
               if k.lower() not in _HOP and (keep_auth or k.lower() != "authorization")}
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
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            if rule is not None and rule.action == "headers":
                replaced = {k.lower() for k in rule.headers}
                out = {k: v for k, v in out.items() if k.lower() not in replaced} | rule.headers
            h.send_response(resp.status_code)
            for k, v in out.items():
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
                        # What was sent arrives first (a receiver drops what it has not read when
                        # the RST comes); then SO_LINGER 0: the close sends RST instead of FIN.
                        _drained(h.connection)
                        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        h.connection.close()
                    else:
                        with contextlib.suppress(OSError):
                            h.connection.shutdown(socket.SHUT_RDWR)
                    return
                if rule is not None and rule.action == "trickle":
                    for i in range(0, len(data), rule.chunk):
                        if i:  # between chunks, not after the last: a request's end is its last byte
                            time.sleep(rule.delay)
                        h.wfile.write(data[i:i + rule.chunk])
                        h.wfile.flush()
                        seen.sent += len(data[i:i + rule.chunk])
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


def _drained(sock: socket.socket, timeout: float = 2.0) -> None:
    """Wait until the peer has acknowledged every byte sent (TIOCOUTQ), then a little more for
    it to read them."""
    deadline = time.monotonic() + timeout
    buf = bytearray(4)
    while time.monotonic() < deadline:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
        if struct.unpack("i", buf)[0] == 0:
            break
        time.sleep(0.01)
    time.sleep(0.2)


# ---------------------------------------------------------------------------------- token server
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer(_Server):
    """Docker's token protocol on a loopback host (``http``, or ``https`` with ``tls``):
    ``GET /token?service=S&scope=repository:NAME:ACTIONS`` with optional basic auth, or ``POST``
    ``grant_type=refresh_token`` with a refresh token (a password of ``users``). ``users`` get what
    they ask for, bad credentials a 401; anonymous callers get ``pull`` on ``public/*`` only. A
    request over the other scheme gets a 400. Tokens are RS256 JWTs with the signing cert in
    ``x5c`` (the answer's ``token_field``, ``expires_in``); ``issued`` holds every one."""

    service = "ocibox-test"
    issuer = "ocibox-test-issuer"

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, host: str = "127.0.0.1", *,
                 tls: tuple[Path, Path] | None = None, expires_in: int = 300, token_field: str = "token") -> None:
        super().__init__(host, tls)
        self.users = users or {}
        self.expires_in = expires_in
        self.token_field = token_field
        self.issued: set[str] = set()
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-subj", "/CN=ocibox-test-token", "-days", "2"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()

    def start(self) -> TokenServer:
        super().start()
        return self

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def registry_auth(self) -> str:
        """The ``auth:`` fragment of a real registry that trusts these tokens."""
        return (f"  token:\n    realm: {self.realm}\n    service: {self.service}\n    issuer: {self.issuer}\n"
                f"    rootcertbundle: {self.cert}\n")

    def queries(self) -> list[dict[str, list[str]]]:
        return [s.query for s in self.seen]

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def handle(self, h: _Handler, seen: Seen) -> None:
        if seen.scheme != self.scheme:
            h.send_body(400, b"wrong scheme")
            return
        q, auth, user = seen.query, seen.authorization, ""
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) != p:
                h.send_body(401, b'{"details":"bad credentials"}', {"Content-Type": "application/json"})
                return
            user = u
        elif q.get("grant_type") == ["refresh_token"]:
            tok = q.get("refresh_token", [""])[0]
            if tok not in self.users.values():
                h.send_body(401, b'{"details":"bad refresh token"}', {"Content-Type": "application/json"})
                return
            user = next(u for u, p in self.users.items() if p == tok)
        access = []
        for scope in " ".join(q.get("scope", [])).split():
            typ, name, actions = scope.split(":") if scope.count(":") == 2 else ("", "", "")
            if typ != "repository":
                continue
            allowed = actions.split(",") if user else (["pull"] if name.startswith("public/") else [])
            acts = [a for a in actions.split(",") if a in allowed]
            if acts:
                access.append({"type": "repository", "name": name, "actions": acts})
        now = int(time.time())
        token = self.sign({"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + self.expires_in,
                           "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access})
        with self.lock:
            self.issued.add(token)
        body = {self.token_field: token, "expires_in": self.expires_in}
        h.send_body(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


# ---------------------------------------------------------------------------------- file server
class FileServer(_Server):
    """Serves ``files[path]`` (404 otherwise) on a loopback host, e.g. 127.0.0.2: blob storage
    behind a registry's redirect, or a vendor's site a foreign layer's URL points at."""

    def __init__(self, files: dict[str, bytes] | None = None, host: str = "127.0.0.2") -> None:
        super().__init__(host, None)
        self.files: dict[str, bytes] = dict(files or {})

    def start(self) -> FileServer:
        super().start()
        return self

    def handle(self, h: _Handler, seen: Seen) -> None:
        body = self.files.get(h.path)
        if body is None:
            h.send_body(404, b"no such file")
            return
        h.send_body(200, body, {"Content-Type": "application/octet-stream"})
        seen.sent += len(body)

    def gets(self, path: str) -> list[dict[str, str]]:
        """The headers (lower-case names) of each GET of ``path``."""
        return [{k.lower(): v for k, v in s.headers.items()} for s in self.requests(f"^{re.escape(path)}$")]


def layout_blobs(layouts: list[Path]) -> dict[str, bytes]:
    """``/blobs/sha256:<hex>`` -> bytes of every blob of OCI layouts (for a :class:`FileServer`)."""
    out: dict[str, bytes] = {}
    for lay in layouts:
        for p in (lay / "blobs" / "sha256").iterdir():
            data = p.read_bytes()
            assert hashlib.sha256(data).hexdigest() == p.name, p
            out[f"/blobs/sha256:{p.name}"] = data
    return out
