"""The model store's errors: one small hierarchy, each class carrying the CLI exit code it maps to.

Every message says what is wrong and what to do about it; none ever contains a key, a SAS token
or a connection string (only the account URL and container name are named).
"""

from __future__ import annotations


class ModelStoreError(Exception):
    """Base of every model-store failure (exit 1 itself: the service failed or could not be reached)."""

    exit_code = 1


class InvalidInput(ModelStoreError):
    """A bad model directory, reference, destination or configuration."""

    exit_code = 2


class NotFound(ModelStoreError):
    """The container, model or version does not exist."""

    exit_code = 3


class IntegrityError(ModelStoreError):
    """Bytes whose sha256 or size do not match the manifest."""

    exit_code = 4


class AccessDenied(ModelStoreError):
    """No credential, a rejected credential or a missing role assignment."""

    exit_code = 5


class AlreadyExists(ModelStoreError):
    """A published version is immutable: publishing it again is refused."""

    exit_code = 6


class GateRefused(ModelStoreError):
    """A promotion without a passing evaluation report against the model the alias names."""

    exit_code = 7


class Busy(ModelStoreError):
    """Another publish of the same version holds it right now: retry once it has finished."""

    exit_code = 9


EXIT_CODES = {
    0: "ok",
    1: "the store could not be reached in time, or failed",
    InvalidInput.exit_code: "bad input: reference, model directory, destination, cache or configuration",
    NotFound.exit_code: "no such container, model, version or alias",
    IntegrityError.exit_code: "integrity: bytes or records that do not match their manifest",
    AccessDenied.exit_code: "access denied, or no credential found",
    AlreadyExists.exit_code: "the version is already published (versions are immutable)",
    GateRefused.exit_code: "refused by the evaluation gate (promote)",
    8: "signature refused: unsigned, unknown key, bad signature or tampered (modelstore.signing)",
    Busy.exit_code: "another publish of the same version is in progress",
}
"""Every exit code of ``modelship-models``: the CLI's help and the docs are checked against it."""
