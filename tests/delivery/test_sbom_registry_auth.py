"""The SBOM's registry half over https with credentials, against real registries on this machine.

Two Debian ``docker-registry`` instances (the registry the local flow runs, on free ports), each
with a TLS certificate signed by a CA made here with openssl:

- ``basic``: htpasswd auth (bcrypt, from glibc's crypt: what ``htpasswd -B`` writes), as a
  registry with admin-style user and password;
- ``token``: token auth as ACR does it: a ``Bearer`` challenge, and a token service (a small
  server in this test, signing ES256 JWTs that the registry checks against the CA) that trades
  Basic credentials for a token limited to the scope asked for.

Docker pushes a tiny image to each (with its own temporary client config), then the SBOM is pushed
over https with credentials, linked to the image digest, and pulled back by that digest. Wrong,
missing and untrusted credentials and certificates are refused with the registry named.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from delivery import engine, oci, sbom
from delivery.processes import PidFile, free_port, start
from delivery.services import REGISTRY_BIN
from delivery.settings import ROOT
from tests.needs import unavailable

USER, PASSWORD = "sbom-pusher", f"pw-{uuid.uuid4().hex}"
REPOSITORY = "modelship-authtest/tiny"
SERVICE, ISSUER = "modelship-authtest", "modelship-authtest-issuer"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    token_cert: Path
    token_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=modelship test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    )
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(d / "server.key"),
        "-out",
        str(d / "server.csr"),
    )
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(d / "server.csr"),
        "-CA",
        str(d / "ca.pem"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(d / "ext"),
        "-out",
        str(d / "server.pem"),
    )
    # The token service's signing certificate: the registry trusts exactly this one (rootcertbundle).
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=modelship test token issuer",
        "-keyout",
        str(d / "token.key"),
        "-out",
        str(d / "token.pem"),
    )
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "token.pem", d / "token.key")


@dataclass
class TokenService:
    """Trades Basic ``USER:PASSWORD`` (or ACR's user name) for an ES256 JWT granting the scope asked
    for; records the asks."""

    pki: Pki
    scopes: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def token(self, scopes: list[str]) -> str:
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = x509.load_pem_x509_certificate(self.pki.token_cert.read_bytes())
        now = datetime.datetime.now(datetime.UTC)
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "iat": now,
            "nbf": now - datetime.timedelta(seconds=5),
            "exp": now + datetime.timedelta(minutes=5),
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        x5c = [base64.b64encode(cert.public_bytes(Encoding.DER)).decode()]
        return jwt.encode(claims, self.pki.token_key.read_text(), algorithm="ES256", headers={"x5c": x5c})

    def __enter__(self) -> TokenService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                scopes = query.get("scope", [])
                service.scopes.extend(scopes)
                # Our user, or ACR's fixed user name for a token from `az acr login --expose-token`.
                expected = {
                    "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
                    for user in (USER, oci.ACR_USERNAME)
                }
                if self.headers.get("Authorization") not in expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": service.token(scopes), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@dataclass
class SecureRegistry:
    host: str
    image: str
    """``host/REPOSITORY:1@sha256:...``: the tiny image Docker pushed there."""
    digest: str


def _htpasswd_line() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # crypt leaves Python in 3.13; bookworm has 3.11
        import crypt as crypt_module

        # Cost 4 (rounds=16): the registry checks the hash on every request.
        salt = crypt_module.mksalt(crypt_module.METHOD_BLOWFISH, rounds=16)
        return f"{USER}:{crypt_module.crypt(PASSWORD, salt)}\n"


def _tiny_image(tag: str, tmp: Path) -> None:
    """``docker import`` of a one-file root filesystem, tagged ``tag``."""
    data = f"modelship sbom auth test {uuid.uuid4().hex}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp / "rootfs.tar").write_bytes(buf.getvalue())
    engine.docker("import", str(tmp / "rootfs.tar"), tag, timeout=120)


def _start_registry(tmp: Path, pki: Pki, auth: str) -> tuple[str, PidFile]:
    """A docker-registry with TLS and ``auth`` (YAML under ``auth:``) on a free port; (host, pid file)."""
    import requests

    for attempt in range(3):  # a free port can be taken between the check and the bind: try another
        port = free_port()
        host = f"127.0.0.1:{port}"
        config = tmp / f"config-{port}.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {host}\n  tls:\n    certificate: {pki.cert}\n    key: {pki.key}\n"
            f"auth:\n{auth}"
            "health:\n  storagedriver:\n    enabled: false\n"
        )

        def ready(host: str = host) -> bool:
            try:
                return requests.get(f"https://{host}/v2/", verify=str(pki.ca), timeout=2).status_code == 401
            except requests.RequestException:
                return False

        pid_file = PidFile(tmp / f"registry-{port}.pid")
        try:
            start(
                [str(REGISTRY_BIN), "serve", str(config)],
                tmp / "registry.log",
                ready,
                f"https docker-registry on {host}",
                30.0,
                pid_file,
            )
        except RuntimeError:
            if attempt == 2:
                raise
            continue
        return host, pid_file
    raise AssertionError("unreachable")


def _push_tiny(host: str, tmp: Path) -> SecureRegistry:
    """Docker pushes a tiny image to ``host`` with credentials in a temporary client config."""
    config = tmp / "docker-config"
    config.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    config.chmod(0o700)
    tag = f"{host}/{REPOSITORY}:1"
    _tiny_image(tag, tmp)
    try:
        out = engine.docker("--config", str(config), "push", tag, timeout=300).stdout
    finally:
        engine.docker("rmi", "--force", tag, check=False, timeout=60)
    digest = next(
        line.split("digest: ", 1)[1].split()[0] for line in out.splitlines() if "digest: sha256:" in line
    )
    return SecureRegistry(host, f"{tag}@{digest}", digest)


@pytest.fixture(scope="module")
def needs_tools(docker_engine: None) -> None:
    if not REGISTRY_BIN.exists():
        unavailable(f"{REGISTRY_BIN} is missing: run scripts/bootstrap.sh (apt docker-registry)")


@pytest.fixture(scope="module")
def basic(needs_tools: None, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRegistry]:
    tmp = tmp_path_factory.mktemp("basic-registry")
    (tmp / "htpasswd").write_text(_htpasswd_line())
    host, pid_file = _start_registry(
        tmp, pki, f"  htpasswd:\n    realm: {SERVICE}\n    path: {tmp / 'htpasswd'}\n"
    )
    try:
        yield _push_tiny(host, tmp)
    finally:
        pid_file.stop("docker-registry (basic auth test)")


@pytest.fixture(scope="module")
def token_service(pki: Pki) -> Iterator[TokenService]:
    with TokenService(pki) as service:
        yield service


@pytest.fixture(scope="module")
def bearer(
    needs_tools: None, pki: Pki, token_service: TokenService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureRegistry]:
    tmp = tmp_path_factory.mktemp("token-registry")
    host, pid_file = _start_registry(
        tmp,
        pki,
        (
            f"  token:\n    realm: {token_service.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {pki.token_cert}\n"
        ),
    )
    try:
        yield _push_tiny(host, tmp)
    finally:
        pid_file.stop("docker-registry (token auth test)")


def _sbom_file(tmp: Path, image: str) -> Path:
    path = tmp / "in.cdx.json"
    path.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.6",
                "components": [{"type": "library", "name": "numpy", "version": "2.2.6"}],
                "metadata": {"properties": [{"name": "modelship:image", "value": image}]},
            }
        )
    )
    return path


CREDENTIALS = oci.Credentials(USER, PASSWORD)


@pytest.mark.parametrize("kind", ["basic", "bearer"])
def test_the_sbom_is_pushed_over_https_with_credentials_and_pulled_back_by_the_image_digest(
    kind: str, request: pytest.FixtureRequest, pki: Pki, tmp_path: Path
) -> None:
    registry: SecureRegistry = request.getfixturevalue(kind)
    source = _sbom_file(tmp_path, registry.image)
    pushed = sbom.push(
        registry.host, REPOSITORY, registry.digest, source, credentials=CREDENTIALS, ca_bundle=pki.ca
    )
    digest, bom = sbom.pull(
        registry.host, REPOSITORY, registry.digest, credentials=CREDENTIALS, ca_bundle=pki.ca
    )
    assert digest == pushed
    assert bom["components"] == [{"type": "library", "name": "numpy", "version": "2.2.6"}]
    # distribution 2.8 has no referrers API: the push maintained the OCI referrers tag, over https too.
    listed = sbom.referrers(
        registry.host, REPOSITORY, registry.digest, credentials=CREDENTIALS, ca_bundle=pki.ca
    )
    assert [d["digest"] for d in listed] == [pushed]
    assert listed[0]["artifactType"] == sbom.SBOM_MEDIA_TYPE


def test_the_token_is_asked_for_the_whole_scope_of_the_work(
    bearer: SecureRegistry, pki: Pki, token_service: TokenService, tmp_path: Path
) -> None:
    token_service.scopes.clear()
    sbom.push(
        bearer.host,
        REPOSITORY,
        bearer.digest,
        _sbom_file(tmp_path, bearer.image),
        credentials=CREDENTIALS,
        ca_bundle=pki.ca,
    )
    # One token for pull and push (a token for "pull" alone is refused at the first upload).
    assert token_service.scopes == [f"repository:{REPOSITORY}:pull,push"]
    token_service.scopes.clear()
    sbom.pull(bearer.host, REPOSITORY, bearer.digest, credentials=CREDENTIALS, ca_bundle=pki.ca)
    assert token_service.scopes == [f"repository:{REPOSITORY}:pull"]


@pytest.mark.parametrize("kind", ["basic", "bearer"])
def test_wrong_or_missing_credentials_are_refused_naming_the_registry(
    kind: str, request: pytest.FixtureRequest, pki: Pki, tmp_path: Path
) -> None:
    registry: SecureRegistry = request.getfixturevalue(kind)
    source = _sbom_file(tmp_path, registry.image)
    wrong = oci.Credentials(USER, "not-the-password")
    with pytest.raises(
        sbom.SbomCredentialsError, match=f"{registry.host}.*refused the credentials of 'sbom-pusher'"
    ):
        sbom.push(registry.host, REPOSITORY, registry.digest, source, credentials=wrong, ca_bundle=pki.ca)
    with pytest.raises(sbom.SbomCredentialsError, match=f"{registry.host} requires authentication"):
        sbom.push(registry.host, REPOSITORY, registry.digest, source, ca_bundle=pki.ca)
    with pytest.raises(sbom.SbomCredentialsError, match=f"{registry.host}.*refused"):
        sbom.pull(registry.host, REPOSITORY, registry.digest, credentials=wrong, ca_bundle=pki.ca)


def test_an_untrusted_certificate_is_refused(basic: SecureRegistry, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(sbom.SbomError, match=f"{basic.host}: TLS verification failed.*--ca-bundle"):
        sbom.push(
            basic.host, REPOSITORY, basic.digest, _sbom_file(tmp_path, basic.image), credentials=CREDENTIALS
        )


def _cli(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "delivery.sbom", *args],
        cwd=ROOT,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_the_cli_pushes_with_the_password_on_stdin_and_the_ca_from_the_environment(
    basic: SecureRegistry, pki: Pki, tmp_path: Path
) -> None:
    source = _sbom_file(tmp_path, basic.image)
    env = {"REQUESTS_CA_BUNDLE": str(pki.ca)}
    pushed = _cli(
        "push",
        "--image",
        basic.image,
        "--sbom",
        str(source),
        "--username",
        USER,
        "--password-stdin",
        stdin=PASSWORD + "\n",
        env=env,
    )
    assert pushed.returncode == 0, pushed.stderr
    last = pushed.stdout.strip().splitlines()[-1]
    assert last.startswith(sbom.DIGEST_PREFIX + "sha256:")
    assert PASSWORD not in pushed.stdout + pushed.stderr
    out = tmp_path / "pulled.json"
    pulled = _cli(
        "pull",
        "--image",
        basic.image,
        "--username",
        USER,
        "--out",
        str(out),
        env={**env, sbom.PASSWORD_ENV: PASSWORD},
    )
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == last
    assert json.loads(out.read_text())["components"][0]["name"] == "numpy"
    # The pushed SBOM names the image it describes.
    assert {"name": "modelship:image", "value": basic.image} in json.loads(out.read_text())["metadata"][
        "properties"
    ]


def test_the_cli_exit_codes(basic: SecureRegistry, pki: Pki, tmp_path: Path) -> None:
    source = _sbom_file(tmp_path, basic.image)
    ca = ["--ca-bundle", str(pki.ca)]
    refused = _cli(
        "push",
        "--image",
        basic.image,
        "--sbom",
        str(source),
        "--username",
        USER,
        *ca,
        env={sbom.PASSWORD_ENV: "wrong"},
    )
    assert refused.returncode == sbom.EXIT_CREDENTIALS
    assert f"sbom: FAILED: {basic.host} refused the credentials" in refused.stderr
    assert "Traceback" not in refused.stderr
    anonymous = _cli("push", "--image", basic.image, "--sbom", str(source), *ca)
    assert anonymous.returncode == sbom.EXIT_CREDENTIALS
    assert f"{basic.host} requires authentication" in anonymous.stderr
    no_password = _cli(
        "push",
        "--image",
        basic.image,
        "--sbom",
        str(source),
        "--username",
        USER,
        *ca,
        env={sbom.PASSWORD_ENV: ""},
    )
    assert no_password.returncode == sbom.EXIT_CREDENTIALS and "--password-stdin" in no_password.stderr
    other = basic.image.rsplit("@", 1)[0] + "@sha256:" + "0" * 64
    missing = _cli("pull", "--image", other, "--username", USER, *ca, env={sbom.PASSWORD_ENV: PASSWORD})
    assert missing.returncode == sbom.EXIT_FAILED
    assert f"no SBOM refers to {basic.host}/{REPOSITORY}@sha256:" in missing.stderr
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text('{"spdxVersion": "SPDX-2.3"}')
    for bad in (
        ["push", "--image", "registry/repo:tag"],
        ["push", "--image", basic.image, "--sbom", "/nonexistent"],
        ["push", "--image", basic.image, "--sbom", str(tmp_path / "list.json")],
        ["push", "--image", basic.image, "--sbom", str(tmp_path / "other.json")],
        ["pull", "--image", basic.image, "--password-stdin"],
        ["frobnicate"],
    ):
        proc = _cli(*bad)
        assert proc.returncode == sbom.EXIT_USAGE, (bad, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def plain(needs_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRegistry]:
    from delivery.services import LocalRegistry

    tmp = tmp_path_factory.mktemp("plain-registry")
    local = LocalRegistry(tmp, free_port())
    local.ensure()
    try:
        tag = f"{local.host}/{REPOSITORY}:1"
        _tiny_image(tag, tmp)
        try:
            digest = engine.push(tag, f"{local.host}/{REPOSITORY}")
        finally:
            engine.docker("rmi", "--force", tag, check=False, timeout=60)
        yield SecureRegistry(local.host, f"{tag}@{digest}", digest)
    finally:
        local.stop()


def test_the_local_registry_stays_plain_http_and_anonymous(plain: SecureRegistry, tmp_path: Path) -> None:
    # https is tried first; the loopback registry does not speak TLS, so plain http, no credentials.
    assert oci.Session(plain.host, REPOSITORY).base == f"http://{plain.host}"
    pushed = sbom.push(plain.host, REPOSITORY, plain.digest, _sbom_file(tmp_path, plain.image))
    assert sbom.pull(plain.host, REPOSITORY, plain.digest)[0] == pushed
    with pytest.raises(oci.RegistryError, match=f"{plain.host} does not speak TLS"):
        oci.Session(plain.host, REPOSITORY, plain_http=False)


def test_plain_http_is_refused_for_any_other_registry() -> None:
    with pytest.raises(oci.RegistryError, match=r"plain http to myacr\.azurecr\.io refused"):
        oci.Session("myacr.azurecr.io", REPOSITORY, plain_http=True)
    assert (
        oci.is_loopback("127.0.0.1:5000") and oci.is_loopback("localhost") and oci.is_loopback("[::1]:5000")
    )
    assert not oci.is_loopback("127.0.0.1.nip.io") and not oci.is_loopback("myacr.azurecr.io")


def test_the_cloud_command_gets_its_token_from_az_and_pushes_over_https(
    bearer: SecureRegistry, pki: Pki, token_service: TokenService, tmp_path: Path
) -> None:
    """What ImageSbom runs (``push --image REF --acr NAME``), with a stub ``az`` that prints the token
    the way ``az acr login --expose-token --output tsv --query accessToken`` does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "az-calls"
    (bin_dir / "az").write_text(f'#!/bin/sh\necho "$*" >> {calls}\necho "{PASSWORD}"\n')
    (bin_dir / "az").chmod(0o755)
    source = _sbom_file(tmp_path, bearer.image)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "REQUESTS_CA_BUNDLE": str(pki.ca)}
    token_service.scopes.clear()
    pushed = _cli(
        "push", "--image", bearer.image, "--sbom", str(source), "--acr", "modelshiptestacr", env=env
    )
    assert pushed.returncode == 0, pushed.stderr
    assert calls.read_text().split() == [
        "acr",
        "login",
        "--name",
        "modelshiptestacr",
        "--expose-token",
        "--output",
        "tsv",
        "--query",
        "accessToken",
        "--only-show-errors",
    ]
    assert token_service.scopes == [f"repository:{REPOSITORY}:pull,push"]
    assert PASSWORD not in pushed.stdout + pushed.stderr
    digest = pushed.stdout.strip().splitlines()[-1].removeprefix(sbom.DIGEST_PREFIX)
    assert (
        sbom.pull(bearer.host, REPOSITORY, bearer.digest, credentials=CREDENTIALS, ca_bundle=pki.ca)[0]
        == digest
    )
    # A failing az (not signed in) is exit 3, with its message.
    (bin_dir / "az").write_text(
        "#!/bin/sh\necho 'ERROR: Please run az login to setup account.' >&2\nexit 1\n"
    )
    refused = _cli(
        "push", "--image", bearer.image, "--sbom", str(source), "--acr", "modelshiptestacr", env=env
    )
    assert refused.returncode == sbom.EXIT_CREDENTIALS
    assert (
        "az acr login --name modelshiptestacr --expose-token failed (exit 1): ERROR: Please run az login"
        in (refused.stderr)
    )
