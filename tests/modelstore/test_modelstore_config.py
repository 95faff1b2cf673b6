"""References, configuration and destinations: validated before any network call (no emulator needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelstore import (
    AccessDenied,
    AlreadyExists,
    IntegrityError,
    InvalidInput,
    ModelStore,
    ModelStoreError,
    NotFound,
    parse_ref,
)
from modelstore.cli import main
from modelstore.errors import EXIT_CODES, Busy, GateRefused
from modelstore.localdir import check_dest as _check_dest
from modelstore.signing import SignatureRefused

REPO = Path(__file__).resolve().parents[2]


class FakeCredential:
    """A token credential that is never asked for a token: these tests stop before any request."""

    def get_token(self, *scopes, **kwargs):
        raise AssertionError("no request expected")


@pytest.mark.parametrize(("ref", "expected"), [
    ("digits", ("digits", "latest")),
    ("digits@latest", ("digits", "latest")),
    ("digits@1.2.0", ("digits", "1.2.0")),
    ("my-model@2025-01-01_rc1", ("my-model", "2025-01-01_rc1")),
])
def test_parse_ref(ref, expected):
    assert parse_ref(ref) == expected


@pytest.mark.parametrize(("ref", "message"), [
    ("Digits", "model name 'Digits' is not allowed"),
    ("digits@", "empty version after '@'"),
    ("a@b@c", "is not NAME, NAME@VERSION, NAME@ALIAS or NAME@latest"),
    ("digits@latest.json", "reserved for the latest pointer"),
    ("digits@-1", "version '-1' is not allowed"),
    ("../etc", "is not allowed"),
])
def test_parse_ref_rejects_bad_references(ref, message):
    with pytest.raises(InvalidInput, match=message):
        parse_ref(ref)


def test_exit_codes_are_distinct_per_failure_kind_and_documented(capsys):
    kinds = (ModelStoreError, InvalidInput, NotFound, IntegrityError, AccessDenied, AlreadyExists,
             GateRefused, SignatureRefused, Busy)
    codes = {cls: cls.exit_code for cls in kinds}
    assert codes == {ModelStoreError: 1, InvalidInput: 2, NotFound: 3, IntegrityError: 4, AccessDenied: 5,
                     AlreadyExists: 6, GateRefused: 7, SignatureRefused: 8, Busy: 9}
    assert sorted(EXIT_CODES) == [0, *sorted(codes.values())]
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    docs = " ".join((REPO / "docs" / "modelstore.md").read_text().split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {meaning}" in help_text
        assert f"| {code} | {meaning} |" in docs, f"exit code {code} is not in docs/modelstore.md"


def test_from_env_without_configuration_names_both_options(monkeypatch, capsys):
    for var in ("MODELSHIP_STORE_URL", "AZURE_STORAGE_CONNECTION_STRING", "MODELSHIP_STORE_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(InvalidInput, match=r"MODELSHIP_STORE_URL .* AZURE_STORAGE_CONNECTION_STRING"):
        ModelStore.from_env()
    assert main(["list"]) == 2
    assert "no model store configured" in capsys.readouterr().err


def test_account_url_wins_over_connection_string_and_is_the_only_location_kept(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=x;AccountKey=c2VjcmV0;BlobEndpoint=http://x")
    monkeypatch.setenv("MODELSHIP_STORE_URL", "https://acct.blob.core.windows.net/")
    store = ModelStore.from_env(credential=FakeCredential())
    assert (store.account_url, store.container_name) == ("https://acct.blob.core.windows.net", "models")
    assert "c2VjcmV0" not in repr(store) + store.where


@pytest.mark.parametrize(("url", "message"), [
    ("acct.blob.core.windows.net", "is not valid"),
    ("https://acct.blob.core.windows.net/?sv=2024&sig=abc", "no SAS or query string"),
    ("http://acct.blob.core.windows.net", "must use https"),
])
def test_bad_account_urls_are_refused_without_echoing_a_sas(url, message):
    with pytest.raises(InvalidInput, match=message) as info:
        ModelStore.from_account_url(url, credential=FakeCredential())
    assert "sig=" not in str(info.value)


def test_malformed_connection_string_is_not_echoed():
    with pytest.raises(InvalidInput, match="AZURE_STORAGE_CONNECTION_STRING is malformed") as info:
        ModelStore.from_connection_string("AccountKey=c2VjcmV0LWtleQ==;nonsense")
    assert "c2VjcmV0" not in str(info.value)


@pytest.mark.parametrize("name", ["ab", "Models", "a--b", "-ab", "x" * 64, "under_score"])
def test_bad_container_names_are_refused(name):
    with pytest.raises(InvalidInput, match=r"container name .* is not valid"):
        ModelStore.from_account_url("https://acct.blob.core.windows.net", name, credential=FakeCredential())


def test_account_keys_cannot_be_passed_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["list", "--account-key", "c2VjcmV0"])
    assert info.value.code == 2


def test_dest_that_is_not_a_model_directory_is_refused(tmp_path):
    _check_dest(tmp_path / "new")  # absent: fine
    (tmp_path / "empty").mkdir()
    _check_dest(tmp_path / "empty")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "manifest.json").write_text("{}")
    _check_dest(tmp_path / "model")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="is not a directory"):
        _check_dest(tmp_path / "file")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("precious")
    with pytest.raises(InvalidInput, match="refusing to replace"):
        _check_dest(tmp_path / "home")


class _UnreachableBlob:
    """A blob client whose request fails the way urllib3 reports it: with the request URL quoted."""

    def __init__(self, error: Exception):
        self._error = error

    def download_blob(self, *args, **kwargs):
        raise self._error


class _UnreachableContainer:
    container_name = "models"

    def __init__(self, error: Exception):
        self._error = error

    def get_blob_client(self, name):
        return _UnreachableBlob(self._error)


@pytest.mark.parametrize("kind", ["request", "response"])
def test_sdk_errors_quoting_a_sas_url_are_redacted(kind):
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    quoted = ("HTTPConnectionPool(host='acct.blob.core.windows.net', port=443): Max retries exceeded with "
              "url: /models/digits/latest.json?sv=2024-08-04&sp=r&sig=c2VjcmV0U2lnbmF0dXJl%3D (Caused by X)")
    error = ServiceRequestError(quoted) if kind == "request" else HttpResponseError(message=quoted)
    store = ModelStore(_UnreachableContainer(error),
                       account_url="https://acct.blob.core.windows.net/?sv=2024-08-04&sig=c2VjcmV0U2lnbmF0dXJl")
    with pytest.raises(ModelStoreError) as info:
        store.latest("digits")
    message = str(info.value)
    assert "acct.blob.core.windows.net" in message and "sig=<redacted>" in message
    assert "c2VjcmV0" not in message
