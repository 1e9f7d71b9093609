"""Test peers for the pull tests: a token issuer (JWTs signed with a test key, trusted by a real
registry with ``auth: token``), registries with htpasswd or token auth, a fault-injecting proxy
in front of a real registry, and a blob server on a second loopback host (redirect target).

Nothing here uses ocibox code. JWTs are signed with the ``openssl`` command (RS256), so the
tests need no extra Python package.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from registry import Registry, free_port


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Server:
    """A threading HTTP server on ``host`` (any 127.0.0.0/8 address) in a daemon thread."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler], host: str = "127.0.0.1") -> None:
        self.httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.host = f"{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> _Server:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner  # type: ignore[attr-defined]

    def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# ---------------------------------------------------------------------------------- token issuer
class _TokenHandler(_Quiet):
    def do_GET(self) -> None:
        self.owner.handle(self)

    def do_POST(self) -> None:
        self.owner.handle(self)


class TokenIssuer(_Server):
    """Docker's token protocol: ``GET /token?service=S&scope=repository:NAME:ACTIONS`` with optional
    basic auth. ``users`` get what they ask for; anonymous callers get ``pull`` on ``public/*``
    only. Tokens are RS256 JWTs with the signing cert in ``x5c``; the registry trusts the cert."""

    service = "ocibox-test"
    issuer = "ocibox-test-issuer"

    def __init__(self, workdir: Path, users: dict[str, str], *, expires_in: int = 300,
                 token_field: str = "token") -> None:
        super().__init__(_TokenHandler)
        self.users = users
        self.expires_in = expires_in
        self.token_field = token_field
        self.requests: list[dict[str, Any]] = []
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-subj", "/CN=ocibox-test-token", "-days", "2"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()

    @property
    def realm(self) -> str:
        return f"http://{self.host}/token"

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def handle(self, h: _TokenHandler) -> None:
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(h.path).query)
        if h.command == "POST":
            n = int(h.headers.get("Content-Length", "0"))
            q.update(parse_qs(h.rfile.read(n).decode()))
        auth = h.headers.get("Authorization", "")
        self.requests.append({"method": h.command, "path": h.path, "authorization": auth, "query": q})
        user = ""
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
        body = {self.token_field: token, "expires_in": self.expires_in}
        h.send_body(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def registry_auth(self) -> str:
        return (f"  token:\n    realm: {self.realm}\n    service: {self.service}\n    issuer: {self.issuer}\n"
                f"    rootcertbundle: {self.cert}\n")


def htpasswd_auth(workdir: Path, users: dict[str, str]) -> str:
    """The ``auth:`` fragment of a registry with htpasswd (bcrypt) users."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "htpasswd"
    lines = []
    for u, p in users.items():
        lines.append(subprocess.run(["htpasswd", "-Bbn", u, p], check=True, capture_output=True,
                                    text=True).stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return f"  htpasswd:\n    realm: ocibox-test\n    path: {path}\n"


def start_registry(root: Path, auth: str = "") -> Registry:
    """A real registry; with auth it answers 401 to the readiness probe, which is fine."""
    reg = Registry(root, auth=auth)
    return reg.start()


# ---------------------------------------------------------------------------------- proxy
@dataclass
class Fault:
    """What the proxy does to requests whose path matches ``pattern`` (a regex), ``times`` times.

    ``status``: answer this status (with ``headers``) instead of forwarding;
    ``cut``: forward, but drop the connection after this many body bytes;
    ``redirect``: answer 307 to this base URL + ``/blobs/<digest>``;
    ``body``: answer 200 with this body (``headers`` too); ``endless``: a body that never ends;
    ``set_headers``: forward, but override these response headers.
    """

    pattern: str
    times: int = 1
    method: str = "GET"
    status: int = 0
    cut: int = -1
    redirect: str = ""
    body: bytes | None = None
    endless: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    set_headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0


class _ProxyHandler(_Quiet):
    def do_GET(self) -> None:
        self.owner.handle(self)

    def do_HEAD(self) -> None:
        self.owner.handle(self)


_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-authenticate", "host", "content-length"}


class Proxy(_Server):
    """A reverse proxy in front of ``upstream`` (``host:port``) that can inject faults."""

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        super().__init__(_ProxyHandler, host)
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.client = httpx.Client(timeout=60)

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def _match(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.hits < f.times and f.method == method and re.search(f.pattern, path):
                    f.hits += 1
                    return f
        return None

    def handle(self, h: _ProxyHandler) -> None:
        headers = {k: v for k, v in h.headers.items()}
        with self._lock:
            self.requests.append((h.command, h.path, headers))
        f = self._match(h.command, h.path)
        if f is not None and f.status:
            h.send_body(f.status, b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}',
                        {"Content-Type": "application/json", **f.headers})
            return
        if f is not None and f.redirect:
            digest = h.path.rsplit("/", 1)[1]
            h.send_body(307, b"", {"Location": f"{f.redirect}/blobs/{digest}"})
            return
        if f is not None and f.body is not None:
            h.send_body(200, f.body, f.headers)
            return
        if f is not None and f.endless:
            h.send_response(200)
            for k, v in f.headers.items():
                h.send_header(k, v)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            chunk = b"[" + b" " * 65536
            try:
                for _ in range(100_000):  # 6 GB: far more than any client may read
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            h.close_connection = True
            return
        fwd = {k: v for k, v in headers.items() if k.lower() not in _HOP}
        req = self.client.build_request(h.command, f"http://{self.upstream}{h.path}", headers=fwd)
        resp = self.client.send(req, stream=True)
        try:
            h.send_response(resp.status_code)
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            if f is not None:
                out.update(f.set_headers)
            for k, v in out.items():
                h.send_header(k, v)
            length = resp.headers.get("content-length")
            if length is not None:
                h.send_header("Content-Length", length)
            else:
                h.close_connection = True
            h.end_headers()
            if h.command == "HEAD":
                return
            sent = 0
            for chunk in resp.iter_raw():
                if f is not None and f.cut >= 0 and sent + len(chunk) >= f.cut:
                    h.wfile.write(chunk[: f.cut - sent])
                    h.wfile.flush()
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                h.wfile.write(chunk)
                sent += len(chunk)
        finally:
            resp.close()

    def stop(self) -> None:
        super().stop()
        self.client.close()

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.search(pattern, p))


# ---------------------------------------------------------------------------------- blob server
class _BlobHandler(_Quiet):
    def do_GET(self) -> None:
        owner = self.owner
        owner.requests.append((self.path, {k: v for k, v in self.headers.items()}))
        digest = self.path.rsplit("/", 1)[1]
        hexd = digest.split(":")[-1]
        for d in owner.dirs:
            p = Path(d) / "blobs" / "sha256" / hexd
            if p.is_file():
                self.send_body(200, p.read_bytes(), {"Content-Type": "application/octet-stream"})
                return
        self.send_body(404, b"no such blob")


class BlobServer(_Server):
    """Serves ``/blobs/<digest>`` from OCI layouts on a loopback host (e.g. 127.0.0.2), as blob
    storage behind a registry redirect would; records every request's headers."""

    def __init__(self, dirs: list[Path], host: str = "127.0.0.2") -> None:
        super().__init__(_BlobHandler, host)
        self.dirs = dirs
        self.requests: list[tuple[str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def wait_port(host: str, timeout: float = 10) -> None:
    name, port = host.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((name, int(port)), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host} did not open")


__all__ = ["BlobServer", "Fault", "Proxy", "TokenIssuer", "free_port", "htpasswd_auth", "start_registry",
           "wait_port"]
_unused: Callable[[], None] | None = None
