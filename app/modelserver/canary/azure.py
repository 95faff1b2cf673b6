"""Entra ID tokens for Azure Monitor managed Prometheus through Microsoft Entra Workload ID.

The analysis Job runs under a Kubernetes service account federated with a user-assigned managed
identity. The AKS workload-identity webhook mounts a projected service-account token and sets
``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``, ``AZURE_FEDERATED_TOKEN_FILE`` and
``AZURE_AUTHORITY_HOST``; the token is exchanged for an access token with the OAuth 2.0 client
credentials grant and a federated ``client_assertion`` (Microsoft identity platform, "access token
request with a federated credential"). Nothing is stored: no secret, no key.

This is the same exchange as ``azure.identity.WorkloadIdentityCredential``, written with the
standard library because the Job runs in the model server image, which carries only the server's
dependencies (adding azure-identity and msal to every serving pod for one POST is not worth it).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

PROMETHEUS_SCOPE = "https://prometheus.monitor.azure.com/.default"
"""Audience of the Azure Monitor workspace query API."""
ENV_KEYS = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")
TIMEOUT = 10.0


class AzureAuthError(RuntimeError):
    """No token could be had; the message says which variable, file or endpoint failed."""


class WorkloadIdentityToken:
    """A callable that returns a bearer token for ``scope``, refreshed five minutes before expiry."""

    def __init__(self, scope: str = PROMETHEUS_SCOPE, env: Mapping[str, str] | None = None,
                 timeout: float = TIMEOUT):
        env = os.environ if env is None else env
        missing = [k for k in ENV_KEYS if not env.get(k)]
        if missing:
            raise AzureAuthError(
                f"workload identity is not set up in this pod: {', '.join(missing)} unset (the pod needs the "
                "label azure.workload.identity/use=true and a service account annotated with "
                "azure.workload.identity/client-id)"
            )
        self.scope = scope
        self.client_id = env["AZURE_CLIENT_ID"]
        self.tenant_id = env["AZURE_TENANT_ID"]
        self.token_file = env["AZURE_FEDERATED_TOKEN_FILE"]
        authority = env.get("AZURE_AUTHORITY_HOST") or "https://login.microsoftonline.com/"
        self.endpoint = f"{authority.rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"
        self.timeout = timeout
        self._token = ""
        self._expires = 0.0

    def __call__(self) -> str:
        if self._token and time.time() < self._expires - 300:
            return self._token
        try:
            # Read on every exchange: the kubelet rotates the projected token.
            assertion = Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AzureAuthError(
                f"cannot read the federated token {self.token_file}: {exc.strerror}"
            ) from None
        form = urllib.parse.urlencode({
            "client_id": self.client_id,
            "scope": self.scope,
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }).encode()
        try:
            request = urllib.request.Request(self.endpoint, data=form)
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise AzureAuthError(
                f"{self.endpoint} refused the token exchange ({exc.code}): {detail}"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError, json.JSONDecodeError) as exc:
            raise AzureAuthError(f"cannot reach {self.endpoint}: {getattr(exc, 'reason', exc)}") from None
        if "access_token" not in body:
            raise AzureAuthError(f"{self.endpoint} answered without an access_token: {body.get('error')}")
        self._token = body["access_token"]
        self._expires = time.time() + float(body.get("expires_in", 3600))
        return self._token
