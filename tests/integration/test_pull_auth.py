"""Auth against real registries: htpasswd basic auth, and ``auth: token`` trusting a token issuer
run by the test (tests/faultproxy.py's TokenServer: RS256 JWTs the registry verifies). Credentials from docker's config.json,
$REGISTRY_AUTH_FILE, podman's auth.json and a credential helper; login/logout; a redirect to a
second loopback host that must get no Authorization; and the scheme/realm rules."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import oci
import pytest
from auth_helpers import htpasswd_auth, start_registry
from cli import ocibox
from faultproxy import FaultProxy, FileServer, TokenServer, layout_blobs
from registry import Registry

from ocibox import puller
from ocibox.errors import AuthError
from ocibox.puller._client import RegistryAuth, RegistryClient
from ocibox.puller._creds import Credentials, lookup
from ocibox.puller._hosts import is_loopback, schemes
from ocibox.reference import Reference
from ocibox.settings import Config, RegistryConfig, Settings

# every test here runs with no credentials from the machine (tests/integration/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("isolated_creds")]
USERS = {"alice": "s3cret-Pw"}


def _layout(tmp: Path, name: str, text: bytes) -> oci.Layout:
    lay = oci.Layout(tmp / name)
    layer = oci.Layer(oci.make_tar([oci.Entry("hello", data=text)]))
    lay.tag(lay.add_manifest([layer]), "t")
    return lay


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, oci.Layout]]:
    tmp = tmp_path_factory.mktemp("basic")
    reg = start_registry(tmp / "reg", htpasswd_auth(tmp / "auth", USERS))
    lay = _layout(tmp, "layout", b"basic\n")
    oci.skopeo_push(lay.path, "t", f"{reg.host}/priv/img:v1", creds="alice:s3cret-Pw")
    yield reg, lay
    reg.stop()


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, TokenServer]]:
    tmp = tmp_path_factory.mktemp("token")
    issuer = TokenServer(tmp / "issuer", USERS)
    issuer.start()
    reg = start_registry(tmp / "reg", issuer.registry_auth())
    for repo in ("private/img:v1", "public/img:v1"):
        lay = _layout(tmp, "layout-" + repo.replace("/", "_").replace(":", "_"), repo.encode())
        oci.skopeo_push(lay.path, "t", f"{reg.host}/{repo}", creds="alice:s3cret-Pw")
    issuer.seen.clear()
    yield reg, issuer
    reg.stop()
    issuer.stop()


def write_docker_config(home: Path, host: str, user: str, pw: str) -> Path:
    path = home / "docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{user}:{pw}".encode()).decode()}}}))
    return path


def _pull(root: Path, ref: str) -> puller.PullResult:
    return puller.pull(Settings(root=root, quiet=True), Reference.parse(ref))


# ------------------------------------------------------------------ basic auth
def test_basic_needs_credentials(basic: tuple[Registry, oci.Layout], store_root: Path) -> None:
    reg, _ = basic
    with pytest.raises(AuthError, match=rf"requires authentication.*ocibox login {reg.host}"):
        _pull(store_root, f"{reg.host}/priv/img:v1")


def test_basic_with_docker_config(basic: tuple[Registry, oci.Layout], store_root: Path,
                                  isolated_creds: Path) -> None:
    reg, _ = basic
    write_docker_config(isolated_creds, reg.host, "alice", "s3cret-Pw")
    assert _pull(store_root, f"{reg.host}/priv/img:v1").image.layers


def test_basic_wrong_password(basic: tuple[Registry, oci.Layout], store_root: Path, isolated_creds: Path) -> None:
    reg, _ = basic
    write_docker_config(isolated_creds, reg.host, "alice", "wrong")
    with pytest.raises(AuthError):
        _pull(store_root, f"{reg.host}/priv/img:v1")


def test_registry_auth_file_and_podman_auth_json(basic: tuple[Registry, oci.Layout], store_root: Path,
                                                 isolated_creds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg, _ = basic
    entry = {"auths": {reg.host: {"auth": base64.b64encode(b"alice:s3cret-Pw").decode()}}}
    podman = isolated_creds / "xdg" / "containers" / "auth.json"
    podman.parent.mkdir(parents=True)
    podman.write_text(json.dumps(entry))
    assert lookup(reg.host) == Credentials("alice", "s3cret-Pw")
    assert _pull(store_root, f"{reg.host}/priv/img:v1").image.layers
    # $REGISTRY_AUTH_FILE comes first
    other = isolated_creds / "other.json"
    other.write_text(json.dumps({"auths": {f"https://{reg.host}": {"auth": base64.b64encode(b"bob:x").decode()}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(other))
    assert lookup(reg.host) == Credentials("bob", "x")


def test_credential_helper(basic: tuple[Registry, oci.Layout], store_root: Path, isolated_creds: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-credential-NAME get: the protocol with a helper script (a stand-in for a keychain)."""
    reg, _ = basic
    bindir = isolated_creds / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-ocitest"
    helper.write_text("#!/bin/sh\nread server\n"
                      f'if [ "$server" = "{reg.host}" ]; then echo \'{{"ServerURL":"{reg.host}",'
                      '"Username":"alice","Secret":"s3cret-Pw"}\'; else echo "credentials not found in native'
                      ' keychain"; exit 1; fi\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    cfg = isolated_creds / "docker" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"credHelpers": {reg.host: "ocitest"}, "credsStore": "ocitest"}))
    assert lookup(reg.host) == Credentials("alice", "s3cret-Pw")
    assert lookup("127.0.0.1:1") is None  # credsStore asked, "not found" means anonymous
    assert _pull(store_root, f"{reg.host}/priv/img:v1").image.layers


def test_login_logout(basic: tuple[Registry, oci.Layout], isolated_creds: Path, tmp_path: Path) -> None:
    reg, _ = basic
    s = Settings(root=tmp_path / "root")
    cfg = isolated_creds / "docker" / "config.json"
    with pytest.raises(AuthError, match="rejected user 'alice'"):
        puller.login(s, reg.host, username="alice", password="nope", password_stdin=False)
    assert not cfg.exists()
    puller.login(s, f"http://{reg.host}/v2/", username="alice", password="s3cret-Pw", password_stdin=False)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert json.loads(cfg.read_text())["auths"][reg.host]["auth"] == base64.b64encode(b"alice:s3cret-Pw").decode()
    assert lookup(reg.host) == Credentials("alice", "s3cret-Pw")
    # the CLI, with --password-stdin, and logout
    env = dict(os.environ)
    p = ocibox(tmp_path / "r", "login", "-u", "alice", "--password-stdin", reg.host, input="s3cret-Pw\n", env=env)
    assert p.returncode == 0 and p.stdout.strip() == "Login Succeeded", p.stderr
    p = ocibox(tmp_path / "r", "logout", reg.host, env=env)
    assert p.returncode == 0, p.stderr
    assert reg.host not in json.loads(cfg.read_text())["auths"]
    assert lookup(reg.host) is None


# ------------------------------------------------------------------ token auth
def test_token_anonymous_public(token: tuple[Registry, TokenServer], store_root: Path) -> None:
    reg, issuer = token
    issuer.seen.clear()
    assert _pull(store_root, f"{reg.host}/public/img:v1").image.layers
    assert issuer.seen and all(r.authorization == "" for r in issuer.seen)
    assert issuer.seen[0].query["scope"] == ["repository:public/img:pull"]
    assert issuer.seen[0].query["service"] == [issuer.service]


def test_token_private_needs_credentials(token: tuple[Registry, TokenServer], store_root: Path,
                                         isolated_creds: Path) -> None:
    reg, issuer = token
    with pytest.raises(AuthError):
        _pull(store_root, f"{reg.host}/private/img:v1")
    write_docker_config(isolated_creds, reg.host, "alice", "s3cret-Pw")
    issuer.seen.clear()
    assert _pull(store_root, f"{reg.host}/private/img:v1").image.layers
    assert issuer.seen[0].authorization.startswith("Basic ")
    # one token serves the whole pull (manifest, config, layer)
    assert len(issuer.seen) == 1
    write_docker_config(isolated_creds, reg.host, "alice", "bad")
    with pytest.raises(AuthError, match=r"token service .* rejected the credentials"):
        _pull(store_root / "2", f"{reg.host}/private/img:v1")


def test_token_access_token_field_and_identity_token(token: tuple[Registry, TokenServer], store_root: Path,
                                                     isolated_creds: Path) -> None:
    reg, issuer = token
    issuer.token_field = "access_token"
    try:
        path = isolated_creds / "docker" / "config.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"auths": {reg.host: {"identitytoken": "s3cret-Pw"}}}))
        issuer.seen.clear()
        assert _pull(store_root, f"{reg.host}/private/img:v1").image.layers
        assert issuer.seen[0].method == "POST"
        assert issuer.seen[0].query["grant_type"] == ["refresh_token"]
    finally:
        issuer.token_field = "token"


def test_token_new_scope_for_another_repository(token: tuple[Registry, TokenServer], tmp_path: Path) -> None:
    reg, issuer = token
    s = Settings(root=tmp_path)
    issuer.seen.clear()
    with RegistryClient(s, reg.host, creds=Credentials("alice", "s3cret-Pw")) as c:
        c.get_manifest("private/img", "v1", "a")
        c.get_manifest("private/img", "v1", "a again")
        c.get_manifest("public/img", "v1", "b")
    assert [r.query["scope"] for r in issuer.seen] == [["repository:private/img:pull"],
                                                              ["repository:public/img:pull"]]


# ------------------------------------------------------------------ redirects
def test_redirect_to_other_host_gets_no_authorization(basic: tuple[Registry, oci.Layout], store_root: Path,
                                                      isolated_creds: Path) -> None:
    reg, lay = basic
    blobs = FileServer(layout_blobs([lay.path]), host="127.0.0.2").start()
    proxy = FaultProxy(reg.host).start()
    try:
        proxy.add(r"/blobs/sha256:", "redirect", times=100, location=f"{blobs.url}/blobs/{{digest}}")
        write_docker_config(isolated_creds, proxy.host, "alice", "s3cret-Pw")
        r = _pull(store_root, f"{proxy.host}/priv/img:v1")
        assert r.image.layers
        assert len(blobs.seen) == 2  # config and layer came from the other host
        assert all("Authorization" not in h and "authorization" not in h for h in (s.headers for s in blobs.seen))
        # ... while the registry itself did get credentials
        assert any(h.get("Authorization", "").startswith("Basic ") for h in (s.headers for s in proxy.seen))
    finally:
        proxy.stop()
        blobs.stop()


# ------------------------------------------------------------------ policy
def test_scheme_policy() -> None:
    s = Settings(root=Path("/nonexistent"), insecure_registries=("reg.lan:5000",),
                 config=Config(registries=(RegistryConfig("conf.lan", insecure=True),)))
    assert schemes(s, "ghcr.io") == ("https",)
    assert schemes(s, "registry-1.docker.io") == ("https",)
    for host in ("127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000", "reg.lan:5000", "conf.lan"):
        assert schemes(s, host) == ("https", "http"), host
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("localhostx:1")


def test_realm_rules() -> None:
    creds = Credentials("alice", "pw")
    https_reg = RegistryAuth("https", "reg.example", creds, may_use_http=False)
    assert https_reg._realm_gets_credentials(httpx.URL("https://auth.example/token"))
    assert not https_reg._realm_gets_credentials(httpx.URL("http://auth.example/token"))
    assert not https_reg._realm_gets_credentials(httpx.URL("http://127.0.0.1/token"))  # no downgrade
    http_reg = RegistryAuth("http", "127.0.0.1:5000", creds, may_use_http=True)
    assert http_reg._realm_gets_credentials(httpx.URL("http://127.0.0.1:9/token"))
    from ocibox.puller._challenge import Challenge

    req = https_reg._token_request(Challenge("bearer", {"realm": "http://auth.example/token", "service": "s"}),
                                   ["repository:a:pull"])
    assert "authorization" not in req.headers and "account" not in str(req.url)
    # requests to other hosts, or the same host over plain http, carry nothing
    flow = https_reg.auth_flow(httpx.Request("GET", "http://reg.example/v2/a/blobs/x",
                                             headers={"Authorization": "Basic x"}))
    assert "authorization" not in next(flow).headers
    flow = https_reg.auth_flow(httpx.Request("GET", "https://storage.example/blob"))
    assert "authorization" not in next(flow).headers
