"""delivery.oci without a registry: the ACR token call, the credentials' repr, the host rules."""

from __future__ import annotations

import subprocess

import pytest

from delivery import oci


def _run(stdout: str = "", stderr: str = "", code: int = 0, seen: list | None = None):
    def run(cmd, **kwargs):
        if seen is not None:
            seen.append((cmd, kwargs))
        return subprocess.CompletedProcess(cmd, code, stdout, stderr)

    return run


def test_the_acr_token_comes_from_the_cli_pipe_and_never_enters_an_argv() -> None:
    seen: list = []
    creds = oci.acr_credentials("modelshipdevacr01", run=_run("eyJ.secret.token\n", seen=seen))
    assert creds == oci.Credentials("00000000-0000-0000-0000-000000000000", "eyJ.secret.token")
    ((cmd, kwargs),) = seen
    assert cmd == [
        "az",
        "acr",
        "login",
        "--name",
        "modelshipdevacr01",
        "--expose-token",
        "--output",
        "tsv",
        "--query",
        "accessToken",
        "--only-show-errors",
    ]
    assert kwargs["capture_output"] is True and kwargs["timeout"] == oci.AZ_TIMEOUT
    assert "secret" not in repr(creds)  # a Credentials never prints its password


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (
            _run(stderr="ERROR: Please run 'az login' to setup account.", code=1),
            r"az acr login --name modelshipdevacr01 --expose-token failed \(exit 1\): "
            r"ERROR: Please run 'az login'",
        ),
        (_run(stdout="\n"), r"failed \(exit 0\): no token printed"),
    ],
)
def test_a_failed_token_call_says_why(run, message: str) -> None:
    with pytest.raises(oci.CredentialsError, match=message):
        oci.acr_credentials("modelshipdevacr01", run=run)


def test_a_missing_or_slow_cli_and_a_bad_name_are_credentials_errors() -> None:
    def missing(cmd, **kwargs):
        raise FileNotFoundError(cmd[0])

    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    with pytest.raises(oci.CredentialsError, match=r"the Azure CLI \(az\) is not on PATH"):
        oci.acr_credentials("modelshipdevacr01", run=missing)
    with pytest.raises(oci.CredentialsError, match="did not answer within 5 s"):
        oci.acr_credentials("modelshipdevacr01", timeout=5, run=slow)
    with pytest.raises(oci.CredentialsError, match="is not an ACR name"):
        oci.acr_credentials("my-acr.azurecr.io", run=_run("t"))


def test_credentials_need_both_parts() -> None:
    with pytest.raises(oci.CredentialsError, match="both a user name and a password"):
        oci.Credentials("user", "")


def test_a_bad_host_or_ca_bundle_is_refused_before_any_call(tmp_path) -> None:
    with pytest.raises(oci.RegistryError, match="is not a host name"):
        oci.Session("https://myacr.azurecr.io", "modelship/digits")
    with pytest.raises(oci.RegistryError, match=r"CA bundle .* for myacr\.azurecr\.io is not a file"):
        oci.Session("myacr.azurecr.io", "modelship/digits", ca_bundle=tmp_path / "missing.pem")
