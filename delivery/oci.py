"""An authenticated session with one OCI registry: https, credentials, bounded calls.

What ``delivery/sbom.py`` pushes and pulls goes through :class:`Session`:

- **https by default.** Plain http only for a loopback registry (the local one at 127.0.0.1) that
  does not speak TLS, as Docker does for the loopback registries it treats as insecure: https is
  tried first; asking for plain http to any other host is refused. The CA
  comes from the system, ``REQUESTS_CA_BUNDLE``, or an explicit ``ca_bundle`` file.
- **Credentials** are :class:`Credentials` the caller passes (never read from
  ``~/.docker/config.json``, whose entry for the host may be another identity's). For ACR,
  :func:`acr_credentials` asks the Azure CLI for a registry token of the signed-in identity
  (``az acr login --expose-token``: username ``00000000-0000-0000-0000-000000000000``, the token as
  password; Microsoft's documented way for tools other than Docker). The token is read from the
  CLI's stdout pipe: it never enters an argv, an environment, a log line or a file.
- **Authentication is oras-py's** (PyPI ``oras``, pinned): its ``basic`` backend when the registry
  challenges ``Basic`` (an htpasswd registry), its ``token`` backend when it challenges ``Bearer``
  (ACR, or distribution with token auth): the credentials, sent as Basic auth to the challenge's
  realm, buy a bearer token. One thing is ours: the token is asked for once, at the start, for the
  whole scope the work needs (``repository:<repo>:pull,push``). oras-py 0.2.43 asks for the scope
  of the first challenge (``pull``) and then re-sends that token when an upload is challenged for
  ``pull,push``; registries that enforce scopes (ACR) then refuse the push.
- **Bounded**: every HTTP call has ``timeout`` seconds (oras-py sets none), and a failed call is
  retried once, not five times with back-off sleeps of up to 83 s as oras-py's default does.
  Errors name the registry and what failed; they never carry a credential.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import oras.auth.utils
import oras.client
import oras.decorator
import oras.provider
import requests
import requests.adapters

TIMEOUT = 30.0
"""Seconds for one HTTP call (connect and each read)."""
ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
"""The user name that goes with an ACR token from ``az acr login --expose-token``."""
AZ_TIMEOUT = 120.0
"""Seconds ``az acr login --expose-token`` may take."""

HOST_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9a-fA-F:]+\])(:(?P<port>[0-9]{1,5}))?$")
LOOPBACK_RE = re.compile(r"^(127(\.[0-9]{1,3}){3}|localhost|\[::1\])$")


class RegistryError(RuntimeError):
    """A registry could not be reached or answered unexpectedly; the message names it and the call."""


class CredentialsError(RegistryError):
    """Credentials are missing, could not be obtained, or the registry refused them."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A user name and a password or token for one registry (the secret never prints)."""

    username: str
    password: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise CredentialsError("registry credentials need both a user name and a password or token")


def is_loopback(host: str) -> bool:
    """``host`` (``name[:port]``) is this machine: 127.0.0.0/8, localhost or [::1]."""
    match = HOST_RE.match(host)
    return bool(match and LOOPBACK_RE.match(match.group("name")))


def acr_credentials(
    registry_name: str,
    *,
    timeout: float = AZ_TIMEOUT,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> Credentials:
    """A token for ACR ``registry_name`` for the identity the Azure CLI is signed in as."""
    if not re.fullmatch(r"[A-Za-z0-9]{5,50}", registry_name):
        raise CredentialsError(f"{registry_name!r} is not an ACR name (5-50 letters and digits)")
    cmd = [
        "az",
        "acr",
        "login",
        "--name",
        registry_name,
        "--expose-token",
        "--output",
        "tsv",
        "--query",
        "accessToken",
        "--only-show-errors",
    ]
    try:
        proc = run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise CredentialsError(
            f"the Azure CLI (az) is not on PATH: it provides the ACR token for {registry_name}"
        ) from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(
            f"az acr login --name {registry_name} --expose-token did not answer within {timeout:.0f} s"
        ) from None
    token = (proc.stdout or "").strip()
    if proc.returncode != 0 or not token:
        detail = (proc.stderr or "").strip()[-400:] or "no token printed"
        raise CredentialsError(
            f"az acr login --name {registry_name} --expose-token failed (exit {proc.returncode}): {detail}"
        )
    return Credentials(ACR_USERNAME, token)


class _NotTls(Exception):
    """The server answered an https request with something that is not TLS."""


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """Gives every request on a session a timeout unless the call sets its own."""

    def __init__(self, timeout: float):
        super().__init__()
        self._timeout = timeout

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # type: ignore[override]
        return super().send(
            request,
            stream=stream,
            timeout=timeout or self._timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


class _Client(oras.client.OrasClient):
    """oras-py's client, its requests retried once (2 s apart) instead of five times."""

    do_request = oras.decorator.retry(attempts=1, timeout=1)(oras.provider.Registry.do_request.__wrapped__)  # type: ignore[attr-defined]


def _bounded(session: requests.Session, timeout: float) -> requests.Session:
    adapter = _TimeoutAdapter(timeout)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class Session:
    """Calls to ``repository`` in the registry ``host``, authenticated for ``actions``."""

    def __init__(
        self,
        host: str,
        repository: str,
        *,
        credentials: Credentials | None = None,
        actions: str = "pull",
        ca_bundle: Path | str | None = None,
        plain_http: bool | None = None,
        timeout: float = TIMEOUT,
    ):
        if not HOST_RE.match(host or ""):
            raise RegistryError(f"registry {host!r} is not a host name with an optional port")
        if actions not in ("pull", "pull,push"):
            raise ValueError(f"actions must be 'pull' or 'pull,push', got {actions!r}")
        loopback = is_loopback(host)
        if plain_http and not loopback:
            raise RegistryError(f"plain http to {host} refused: only a loopback registry may skip TLS")
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise RegistryError(f"CA bundle {ca_bundle} for {host} is not a file")
        self.host, self.repository, self.timeout = host, repository, timeout
        self._verify: bool | str = str(ca_bundle) if ca_bundle is not None else True
        probe = _bounded(requests.Session(), self.timeout)
        plain = bool(plain_http)
        self.base = f"{'http' if plain else 'https'}://{host}"
        try:
            answer = self._probe(probe)
        except _NotTls:
            # As Docker does for a loopback ("insecure") registry: https first, plain http only when
            # the server does not speak TLS at all (a certificate that fails verification is an error).
            if not loopback or plain_http is False:
                raise RegistryError(f"{host} does not speak TLS on https://{host}/v2/") from None
            plain = True
            self.base = f"http://{host}"
            answer = self._probe(probe)
        self.client = self._login(probe, answer, credentials, actions, plain)

    def _login(
        self,
        probe: requests.Session,
        answer: requests.Response,
        credentials: Credentials | None,
        actions: str,
        plain: bool,
    ) -> oras.client.OrasClient:
        """Answer the ``/v2/`` challenge with ``credentials``; return an authenticated oras client."""
        challenge = answer.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if answer.status_code == 200:
            scheme = "anonymous"
        elif answer.status_code != 401:
            raise RegistryError(
                f"{self.base}/v2/ answered HTTP {answer.status_code}, not an OCI registry's 200 or 401"
            )
        elif credentials is None:
            raise CredentialsError(
                f"{self.host} requires authentication ({scheme or 'no'} challenge) and "
                "no credentials were given"
            )
        elif scheme not in ("basic", "bearer"):
            raise RegistryError(
                f"{self.host} challenges with {challenge.split(' ', 1)[0]!r}; "
                "only Basic and Bearer are supported"
            )
        client = _Client(
            hostname=self.host,
            insecure=plain,
            tls_verify=self._verify,
            auth_backend="basic" if scheme == "basic" else "token",
        )
        _bounded(client.session, self.timeout)
        # Credentials come from the caller only, not from ~/.docker/config.json (oras-py reads it
        # before each push and pull, and its entry for this host may be another identity's).
        client.auth.load_configs = lambda *args, **kwargs: None  # type: ignore[method-assign]
        if credentials is None:
            return client
        client.auth.set_basic_auth(credentials.username, credentials.password)
        if scheme == "bearer":
            realm = oras.auth.utils.parse_auth_header(challenge)
            realm.scope = f"repository:{self.repository}:{actions}"
            try:
                token = client.auth.request_token(realm)
            except (requests.RequestException, ValueError) as exc:
                raise RegistryError(
                    f"{self.host}: cannot reach its token service {realm.realm}: {type(exc).__name__}"
                ) from None
            if not token:
                raise CredentialsError(
                    f"{self.host}: its token service {realm.realm} refused the "
                    f"credentials of {credentials.username!r} for {realm.scope}"
                )
            client.auth.set_token_auth(token)
        if scheme in ("basic", "bearer"):
            checked = self._probe(probe, client.auth.get_auth_header())
            if checked.status_code != 200:
                raise CredentialsError(
                    f"{self.host} refused the credentials of {credentials.username!r} "
                    f"(HTTP {checked.status_code} on /v2/)"
                )
        return client

    def _probe(self, session: requests.Session, headers: dict | None = None) -> requests.Response:
        url = f"{self.base}/v2/"
        try:
            return session.get(url, headers=headers or {}, verify=self._verify, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            if "CERTIFICATE_VERIFY_FAILED" not in str(exc) and self.base.startswith("https:"):
                raise _NotTls() from None
            raise RegistryError(
                f"{self.host}: TLS verification failed ({_reason(exc)}); give its CA "
                "with --ca-bundle or REQUESTS_CA_BUNDLE"
            ) from None
        except requests.RequestException as exc:
            raise RegistryError(
                f"cannot reach {url}: {_reason(exc)} (timeout {self.timeout:.0f} s)"
            ) from None

    def url(self, path: str) -> str:
        """``<scheme>://<host>/v2/<repository>/<path>``."""
        return f"{self.base}/v2/{self.repository}/{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        accept: str | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> requests.Response:
        """One authenticated call on ``/v2/<repository>/<path>``; any HTTP status is returned."""
        headers = {}
        if accept:
            headers["Accept"] = accept
        if content_type:
            headers["Content-Type"] = content_type
        try:
            return self.client.do_request(self.url(path), method, data=body, headers=headers)
        except (requests.RequestException, ValueError) as exc:
            raise RegistryError(
                f"{self.host}: {method} /v2/{self.repository}/{path} failed: {_reason(exc)}"
            ) from None


def _reason(exc: BaseException) -> str:
    """A short cause: the innermost reason of a requests/urllib3 error, cut before any URL query
    (a blob redirect's URL may carry a storage SAS)."""
    inner = getattr(exc.args[0], "reason", None) if exc.args else None
    text = str(inner or exc).split("?", 1)[0]
    return text[:300] or type(exc).__name__
