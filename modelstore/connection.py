"""How the store talks to Blob Storage: the client, bounded timeouts and retries, the SDK's errors mapped.

The client is built from a connection string (the emulator) or an https account URL with an Entra ID
credential, with the container's name checked before any request.

The SDK's defaults retry an unreachable endpoint for 80 s or more and retry a missing credential as
if it were a network blip. Here one number, the store timeout ``T`` (``--timeout``,
``MODELSHIP_STORE_TIMEOUT``, default 15 s), bounds every wait:

- a request that cannot reach the service is retried for at most ``T`` seconds in all, with each
  connection attempt cut short at the end of that window: an unreachable store fails within ``T``;
- a transfer that stops receiving bytes fails after ``T`` seconds of silence, and its retries get
  another ``T`` (after the SDK's own 1 s pause before it re-requests a broken range): a connection
  lost mid-fetch fails within ``2 T + 1`` s, and once one range has given up, every other range of
  the same fetch fails at once;
- a missing or rejected credential is never retried.

Nothing here names more than the account URL: keys, SAS tokens and connection strings never reach a
message or a log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.blob._shared.policies import StorageRetryPolicy, is_checksum_retry, is_retry

from modelstore.errors import AccessDenied, InvalidInput, ModelStoreError, NotFound

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
"""Seconds an unreachable store is retried before the command fails (``2 x + 1 s`` for a silent transfer)."""
TIMEOUT_ENV = "MODELSHIP_STORE_TIMEOUT"
MAX_TIMEOUT = 600.0
_RETRIES = 4
"""Retries per request; their back-offs (T/40 x 1, 2, 4, 8) take under 40% of the window."""

MiB = 1024 * 1024
# Transfer sizes for the SDK: small enough that neither a publish nor a fetch ever holds more than
# (concurrency x 8 MiB) of a model in memory; the defaults would buffer 32-64 MiB in one request.
CLIENT_SIZES = {
    "max_single_put_size": 8 * MiB,
    "max_block_size": 8 * MiB,
    "max_single_get_size": 8 * MiB,
    "max_chunk_get_size": 8 * MiB,
}


def resolve_timeout(timeout: float | str | None) -> float:
    """``timeout`` if given, else ``MODELSHIP_STORE_TIMEOUT``, else 15 s; validated."""
    source = "--timeout"
    if timeout is None:
        timeout = os.environ.get(TIMEOUT_ENV) or None
        source = TIMEOUT_ENV
    if timeout is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = math.nan
    if not (0 < value <= MAX_TIMEOUT):
        raise InvalidInput(
            f"{source} {timeout!r} is not valid: give the seconds to wait for the store, "
            f"a number above 0 and at most {MAX_TIMEOUT:g} (default {DEFAULT_TIMEOUT:g})"
        )
    return value


class BoundedRetry(StorageRetryPolicy):
    """Retry transient failures inside a window of ``timeout`` seconds, never a credential failure.

    The window opens when an attempt fails to get any response and closes ``timeout`` seconds
    later; any response (even an error status) shows the service is reachable and resets it. The
    window is kept per thread, so the concurrent range downloads of one fetch each have their own,
    and it spans the SDK's own re-requests after a body broke off mid-stream.

    Once one request has given up, every request of the same operation gives up at once with the
    same reason: the SDK's concurrent download goes on requesting its remaining ranges after one
    failed, and each must not open a window of its own.
    """

    def __init__(self, timeout: float):
        super().__init__(retry_total=_RETRIES, retry_connect=_RETRIES, retry_read=_RETRIES,
                         retry_status=_RETRIES)
        self.timeout = timeout
        self._failing = threading.local()
        self._gave_up: str | None = None
        """Why a request of the current operation gave up (the store is unreachable), or None."""

    def begin(self) -> None:
        """Start a new operation: a full window, and forget an earlier operation's giving up."""
        self._gave_up = None
        self.reset()

    def reset(self) -> None:
        """Give this thread a full window (a new block or range of the same operation)."""
        self._failing.since = None

    def _remaining(self) -> float:
        since = getattr(self._failing, "since", None)
        return self.timeout if since is None else self.timeout - (time.monotonic() - since)

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        # The SDK counts the failure before asking, so the first back-off sees count 1.
        backoff = self.timeout / 40 * 2 ** (settings["count"] - 1)
        return backoff * random.uniform(0.8, 1.0)

    def send(self, request: Any) -> Any:
        settings = self.configure_retries(request)
        if self._gave_up is not None:
            raise ServiceRequestError(self._gave_up)
        if self._remaining() <= 0:
            # The SDK re-requests a range whose body broke off; the window is already spent.
            self.reset()
            self._gave_up = f"no answer within the {self.timeout:g} s store timeout"
            raise ServiceRequestError(self._gave_up)
        while True:
            started = time.monotonic()
            # Cut a hanging connection attempt off at the window's end (read stalls: read_timeout).
            request.context.options["connection_timeout"] = max(0.1, self._remaining())
            try:
                response = self.next.send(request)
            except ClientAuthenticationError:
                raise  # a missing or rejected credential does not heal by retrying
            except AzureError as err:
                if getattr(self._failing, "since", None) is None:
                    self._failing.since = started
                if not self._again(settings, request, error=err):
                    self._gave_up = str(err)
                    raise
                log.info("no answer from %s (%s); retrying", _origin(request.http_request.url), reason(err))
                continue
            self._failing.since = None
            if (is_retry(response, settings["mode"]) or is_checksum_retry(response)) and self._again(
                settings, request, response=response.http_response
            ):
                log.info("%s answered %d; retrying", _origin(request.http_request.url),
                         response.http_response.status_code)
                continue
            if settings["history"]:
                response.context["history"] = settings["history"]
            response.http_response.location_mode = settings["mode"]  # the SDK's deserializers read it
            return response

    def _again(self, settings: dict[str, Any], request: Any, **outcome: Any) -> bool:
        """Count the failure, and sleep before the next attempt if one fits in the window."""
        if not self.increment(settings, request=request.http_request, **outcome):
            return False
        backoff = self.get_backoff_time(settings)
        if "error" in outcome and backoff >= self._remaining():
            return False
        time.sleep(backoff)
        return True


def client_options(timeout: float) -> dict[str, Any]:
    """Keyword arguments for ``BlobServiceClient`` that bound every wait by ``timeout``."""
    return {
        **CLIENT_SIZES,
        "retry_policy": BoundedRetry(timeout),
        "connection_timeout": timeout,
        "read_timeout": timeout,
    }


EMULATOR_ACCOUNT = "devstoreaccount1"
"""The Azurite emulator's well-known account name."""
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def service_from_connection_string(connection_string: str, timeout: float) -> BlobServiceClient:
    """A bounded client from a connection string (the emulator's, or an account key's)."""
    try:
        return BlobServiceClient.from_connection_string(connection_string, **client_options(timeout))
    except ValueError:
        # Never echo the string: it holds the account key.
        raise InvalidInput(
            "AZURE_STORAGE_CONNECTION_STRING is malformed: expected "
            "'DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...;BlobEndpoint=...'"
        ) from None


def service_from_account_url(url: str, credential: Any, timeout: float) -> BlobServiceClient:
    """A bounded client for ``https://<account>.blob.core.windows.net``; ``credential`` defaults to
    ``DefaultAzureCredential`` (workload identity, managed identity, ``az login``)."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise InvalidInput(
            f"account URL {public_url(url or '')!r} is not valid: use "
            "https://<account>.blob.core.windows.net (no SAS or query string)"
        )
    # The SDK sends an Entra ID token over https only; it would refuse plain http at the first
    # request with a ValueError. Only a key-style credential may talk http to a loopback emulator.
    token = credential is None or hasattr(credential, "get_token")
    if parts.scheme == "http" and (token or parts.hostname not in _LOOPBACK):
        raise InvalidInput(
            f"account URL {url!r} must use https: Entra ID sign-in is never sent over plain http. "
            "Use https://<account>.blob.core.windows.net, or AZURE_STORAGE_CONNECTION_STRING "
            "for the Azurite emulator"
        )
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    return BlobServiceClient(url, credential=credential, **client_options(timeout))


def container_client(service: BlobServiceClient, container: str) -> ContainerClient:
    """The client of ``container``, whose name is checked first (Azure's rule, named in the error)."""
    # Container names: 3-63 lowercase letters, digits and single hyphens.
    if not (3 <= len(container) <= 63) or not all(c.islower() or c.isdigit() or c == "-" for c in container) \
            or container.startswith("-") or container.endswith("-") or "--" in container:
        raise InvalidInput(
            f"container name {container!r} is not valid: use 3-63 lowercase letters, digits and "
            "single hyphens, starting and ending with a letter or digit"
        )
    return service.get_container_client(container)


def public_url(url: str) -> str:
    """The URL without its query string, so a SAS token can never reach a message or a log."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# A SAS signature as the SDK or urllib3 may quote it in a message ("... with url: /models?...&sig=...");
# the other SAS fields (expiry, permissions) are not secret.
_SAS_SIGNATURE = re.compile(r"(?i)\bsig=[^&\s'\"]*")
# urllib3 wraps the socket error: "<...HTTPConnection object at 0x7f...>: Failed to establish a new
# connection: [Errno 111] Connection refused". The errno's text is what a person needs.
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def first_line(exc: BaseException) -> str:
    """First line of an SDK error, with any SAS signature redacted."""
    text = str(getattr(exc, "reason", None) or getattr(exc, "message", None) or str(exc)).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return _SAS_SIGNATURE.sub("sig=<redacted>", line)


def reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("Connection refused", "read timed out")."""
    text = str(exc)
    if m := _ERRNO.search(text):
        return m.group(1).strip()
    lowered = text.lower()
    for needle, said in (("read timed out", "no data within the timeout"),
                         ("timed out", "timed out"),
                         ("incompleteread", "the connection broke off mid-transfer"),
                         ("connection aborted", "the connection was closed"),
                         ("connection reset", "the connection was reset"),
                         ("name or service not known", "unknown host name"),
                         ("temporary failure in name resolution", "the host name could not be resolved")):
        if needle in lowered:
            return said
    return first_line(exc)


class ErrorMap:
    """Translates the SDK's exceptions into the store's, naming the account URL and container only."""

    def __init__(self, account_url: str, container: str, timeout: float):
        self.account_url = account_url
        self.container = container
        self.timeout = timeout

    @property
    def where(self) -> str:
        return f"container '{self.container}' at {self.account_url}"

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        try:
            yield
        except ModelStoreError:
            raise
        except ClientAuthenticationError as exc:
            raise AccessDenied(self.denied(exc)) from None
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise self.no_container() from None
            raise NotFound(f"not found in {self.where}: {first_line(exc)}") from None
        except (ServiceRequestError, ServiceResponseError, IncompleteReadError) as exc:
            raise self.unreachable(exc) from None
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise AccessDenied(self.denied(exc)) from None
            if exc.status_code is None:  # a body that broke off mid-stream ("Unable to stream download")
                raise self.unreachable(exc) from None
            raise ModelStoreError(
                f"the storage service at {self.account_url} failed: {first_line(exc)}"
            ) from None

    def unreachable(self, exc: BaseException, doing: str = "") -> ModelStoreError:
        return ModelStoreError(
            f"cannot reach the model store at {self.account_url}{doing}: {reason(exc)} "
            f"(gave up after retrying for up to {self.timeout:g} s). Is the account URL right and the "
            f"network (or the Azurite emulator) up? The wait is set by --timeout or {TIMEOUT_ENV}"
        )

    def no_container(self) -> NotFound:
        return NotFound(
            f"container '{self.container}' does not exist at {self.account_url}: "
            "create it with `modelship-models publish --create-container DIR` "
            "or through the stack that owns the storage account"
        )

    def denied(self, exc: BaseException) -> str:
        # A credential that could not produce a token fails before any request is sent: it has no
        # response. The service's own refusals (a 403, a wrong key) always come with one.
        if isinstance(exc, ClientAuthenticationError) and getattr(exc, "response", None) is None:
            return (
                f"no Azure credential found for {self.account_url}: sign in with `az login`, run with "
                "a workload or managed identity, or set AZURE_STORAGE_CONNECTION_STRING for the emulator"
            )
        return (
            f"access to {self.where} was denied ({first_line(exc)}): the identity needs "
            "'Storage Blob Data Contributor' (publish) or 'Storage Blob Data Reader' (list, fetch) "
            "on the account, or the emulator connection string is wrong"
        )


# The SDK's transport logs "Incomplete download." on its own before raising; the store retries
# and reports those failures itself, so the bare line would only alarm. Everything else passes.
class _QuietIncompleteDownload(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in ("Incomplete download.", "Unable to stream download.")


for _name in ("azure.core.pipeline.transport._requests_basic",):
    logging.getLogger(_name).addFilter(_QuietIncompleteDownload())


def write_json_if_unchanged(blob: Any, doc: dict[str, Any], etag: str | None) -> bool:
    """Write ``doc`` as JSON to ``blob`` only if the blob is still what was read.

    ``etag`` is the read's ETag, or None when the blob did not exist (then only create it). Returns
    False when another writer got there first: the caller re-reads, re-applies its change and calls
    again after :func:`backoff`. This is how every pointer and alias record is moved.
    """
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    settings = ContentSettings(content_type="application/json")
    try:
        if etag is None:
            blob.upload_blob(data, overwrite=False, content_settings=settings)
        else:
            blob.upload_blob(data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified,
                             content_settings=settings)
    except (ResourceModifiedError, ResourceExistsError):
        return False
    return True


def backoff(attempt: int) -> None:
    """Randomised exponential pause before retrying a conditional write that lost a race."""
    time.sleep(random.uniform(0, min(0.02 * 2**attempt, 0.5)))
