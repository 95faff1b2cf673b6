"""Model signatures: sign a model directory and verify it against trusted public keys.

One definition used at every stage: the model store signs at publish and verifies at fetch, the
image build verifies what it bakes in (``python signature.py verify``, run by the Dockerfile), and
the server verifies ``/opt/model`` before it opens a socket. Signing and verification are the
OpenSSF ``model-signing`` library's (elliptic-curve key, a Sigstore bundle over every file of the
directory); this module only chooses where the signature lives, which keys are trusted, and says
which check failed:

- ``unsigned``: the directory has no ``model.sig``;
- ``unreadable``: ``model.sig`` is not a signature bundle;
- ``unknown-key``: it was signed by a key that is not among the trusted ones;
- ``bad-signature``: the bundle names a trusted key but its signature does not verify;
- ``tampered``: a file differs from what was signed (or a file was added or removed);
- ``no-trusted-key``: there is no trusted public key to verify with.

Standard library only at import (``model_signing`` is imported when used), and runnable as a
script, so the Dockerfile can run it from a stage that has the venv but not the server code.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

SIGNATURE_FILE = "model.sig"
"""The signature bundle, beside the model file and ``manifest.json`` (excluded from what it signs)."""
TRUST_DIR_ENV = "MODELSHIP_TRUST_DIR"
"""The server's setting: a directory of ``*.pub`` files (or one PEM file) the model must be signed by."""
IMAGE_TRUST_DIR = "/opt/trust"
"""Where the image keeps its trusted public keys (``trust/`` of the build context)."""
TRUST_SUBDIR = "trust"
"""The build context's directory of trusted public keys, copied to ``IMAGE_TRUST_DIR``."""


class Check(StrEnum):
    """The verification step that failed."""

    UNSIGNED = "unsigned"
    UNREADABLE = "unreadable"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    TAMPERED = "tampered"
    NO_TRUSTED_KEY = "no-trusted-key"


class SignatureError(Exception):
    """A model directory failed signature verification; ``check`` names the step."""

    def __init__(self, check: Check, message: str):
        super().__init__(f"model signature check failed ({check.value}): {message}")
        self.check = check


@dataclasses.dataclass(frozen=True)
class Signer:
    """Who signed a verified model: the fingerprint of the trusted key that verified it."""

    fingerprint: str
    """sha256 of the key's PEM (SubjectPublicKeyInfo), as model-signing records it in the bundle."""
    key_file: str
    """The trusted key file that matched."""

    @property
    def short(self) -> str:
        return f"key sha256:{self.fingerprint[:16]}"


def fingerprint(public_pem: bytes) -> str:
    """The key id model-signing writes into a bundle: sha256 of the normalised PEM."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(public_pem)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def trusted_key_files(trusted: Path | str) -> list[Path]:
    """The public key files named by ``trusted``: the file itself, or the ``*.pub`` in a directory."""
    path = Path(trusted)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.glob("*.pub") if p.is_file())
    return []


def _hashing_config():
    from model_signing import hashing

    # The signature file cannot sign itself; every other file of the directory is covered.
    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE])


def sign(model_dir: Path | str, private_key: Path | str) -> Path:
    """Sign every file of ``model_dir`` with the EC private key (PEM); write ``model.sig`` there."""
    from model_signing import signing

    model_dir = Path(model_dir)
    out = model_dir / SIGNATURE_FILE
    with contextlib.redirect_stdout(io.StringIO()):
        signing.Config().set_hashing_config(_hashing_config()).use_elliptic_key_signer(
            private_key=Path(private_key)
        ).sign(model_dir, out)
    return out


def bundle_key_hint(signature_file: Path) -> str:
    """The signer's key fingerprint recorded in a bundle (raises ``unreadable`` if there is none)."""
    try:
        bundle = json.loads(signature_file.read_bytes())
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SignatureError(
            Check.UNREADABLE, f"{signature_file} is not a model-signing bundle with a public key hint"
        ) from None
    if not isinstance(hint, str) or len(hint) != 64:
        raise SignatureError(Check.UNREADABLE, f"{signature_file} names no key (hint {hint!r})")
    return hint


def verify(model_dir: Path | str, trusted: Path | str | Iterable[Path]) -> Signer:
    """Verify ``model_dir`` against the trusted keys; return the signer or raise :class:`SignatureError`.

    model-signing checks the bundle's signature, then reads every file of the directory to compare
    it with what was signed. A caller that has already read the model file (the server, the model
    store) uses :func:`open_signature` and :meth:`SignedModel.check` with its own digests instead.
    """
    return open_signature(model_dir, trusted).check()


def open_signature(model_dir: Path | str, trusted: Path | str | Iterable[Path]) -> SignedModel:
    """The signature of ``model_dir``, verified under a trusted key; no model file read yet.

    Raises :class:`SignatureError` (``no-trusted-key``, ``unsigned``, ``unreadable``, ``unknown-key``,
    ``bad-signature``) before any model byte is read; the files are compared by :meth:`SignedModel.check`.
    """
    model_dir = Path(model_dir)
    if isinstance(trusted, (str, Path)):
        where = str(trusted)
        keys = trusted_key_files(trusted)
    else:
        keys = list(trusted)
        where = ", ".join(map(str, keys)) or "(none)"
    if not keys:
        raise SignatureError(
            Check.NO_TRUSTED_KEY,
            f"no trusted public key in {where}: cannot verify {model_dir} (a PEM public key file or a "
            "directory of *.pub files is needed)",
        )
    sig = model_dir / SIGNATURE_FILE
    if not sig.is_file():
        raise SignatureError(
            Check.UNSIGNED,
            f"{model_dir} has no {SIGNATURE_FILE}: the model is unsigned. Publish it through the model "
            "store, which signs it (`modelship-models publish DIR`)",
        )
    hint = bundle_key_hint(sig)
    known = {}
    for key in keys:
        try:
            known[fingerprint(key.read_bytes())] = key
        except (OSError, ValueError) as exc:
            raise SignatureError(Check.NO_TRUSTED_KEY, f"trusted key {key} is not a PEM public key: {exc}") \
                from None
    key = known.get(hint)
    if key is None:
        raise SignatureError(
            Check.UNKNOWN_KEY,
            f"{sig} was signed by key sha256:{hint[:16]}, which is not trusted here (trusted: "
            + ", ".join(f"sha256:{k[:16]}" for k in sorted(known)) + f" from {where})",
        )
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    # What model-signing's verifying.Config.verify does first (use_elliptic_key_verifier): read the
    # bundle, check its DSSE signature with the key and decode the signed manifest from its payload.
    # These modules (and model_signing.manifest) are not its stable API: the version is pinned, and
    # tests/contract/test_signature.py fails on a change of their behaviour.
    with _signature_errors(sig, hint):
        signed = sign_ec_key.Verifier(key).verify(sign_sigstore_pb.Signature.read(sig))
    return SignedModel(model_dir, sig, key, Signer(fingerprint=hint, key_file=str(key)), signed)


@contextlib.contextmanager
def _signature_errors(sig: Path, hint: str) -> Iterator[None]:
    """model-signing's failures, named as the check that failed (its progress output silenced)."""
    from cryptography.exceptions import InvalidSignature

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except InvalidSignature:
        raise SignatureError(
            Check.BAD_SIGNATURE,
            f"{sig} names trusted key sha256:{hint[:16]} but its signature does not verify",
        ) from None
    except ValueError as exc:
        text = str(exc)
        if text.startswith("Signature mismatch"):
            raise SignatureError(
                Check.TAMPERED, f"{sig.parent} differs from what was signed: {_short_diff(text)}") from None
        raise SignatureError(Check.UNREADABLE, f"{sig}: {text}") from None


@dataclasses.dataclass(frozen=True)
class SignedModel:
    """A model directory's signature, verified under a trusted key: what was signed, and by whom."""

    model_dir: Path
    signature_file: Path
    key: Path
    signer: Signer
    signed: Any
    """model-signing's manifest decoded from the verified bundle (``model_signing.manifest.Manifest``)."""

    @property
    def reuses_sha256(self) -> bool:
        """Whether the signature digests each whole file with sha256 (what :func:`sign` writes), so a
        file's sha256 computed by the caller is the digest it signed."""
        params = self.signed.serialization_type
        return params.get("method") == "files" and params.get("hash_type") == "sha256"

    def check(self, sha256: Mapping[str, str] | None = None) -> Signer:
        """Compare the directory's files with what was signed; return the signer or raise ``tampered``.

        ``sha256``: hex sha256 of files the caller has already read, by path relative to the
        directory (the server passes the model file's, computed while it reads the descriptor it
        loads from, and the manifest's). Those files are not read again: their digests stand in
        model-signing's manifest of the directory, every other file is hashed by model-signing, and
        model-signing's manifest comparison decides. Without ``sha256``, or for a signature that does
        not digest whole files with sha256, model-signing reads every file itself.
        """
        from model_signing import hashing, verifying

        if not sha256 or not self.reuses_sha256:
            with _signature_errors(self.signature_file, self.signer.fingerprint):
                verifying.Config().use_elliptic_key_verifier(public_key=self.key).verify(
                    self.model_dir, self.signature_file)
            return self.signer
        from model_signing import manifest
        from model_signing._hashing.hashing import Digest

        params = self.signed.serialization_type
        given = [manifest.FileManifestItem(path=PurePosixPath(name),
                                           digest=Digest("sha256", bytes.fromhex(hexdigest)))
                 for name, hexdigest in sha256.items()]
        with _signature_errors(self.signature_file, self.signer.fingerprint):
            # The files the caller read are left out of model-signing's pass (it still refuses them
            # if they are symlinks or special files); everything else it hashes as verify() would.
            config = hashing.Config().use_file_serialization(
                hashing_algorithm="sha256", allow_symlinks=bool(params.get("allow_symlinks", False)),
            ).set_ignored_paths(paths=[*params.get("ignore_paths", ()), *sha256])
            rest = config.hash(self.model_dir)
            items = [*given, *(manifest.FileManifestItem(path=PurePosixPath(r.identifier), digest=r.digest)
                               for r in rest.resource_descriptors())]
            actual = manifest.Manifest(rest.model_name, items, manifest.SerializationType.from_args(params))
        if actual != self.signed:  # model-signing's comparison: every file, by name and digest
            raise SignatureError(Check.TAMPERED, f"{self.model_dir} differs from what was signed: "
                                                 f"{_differences(actual, self.signed)}")
        return self.signer

    def check_model(self, model_file: str, model_sha256: str, raw_manifest: bytes) -> Signer:
        """:meth:`check`, given the two files the caller has already read: the model file
        ``model_file``, whose sha256 it computed as it read it, and ``manifest.json``, hashed here
        from ``raw_manifest`` (the very bytes the caller parsed)."""
        from .manifest import MANIFEST_FILE  # here, not at import: signature.py also runs as a script

        return self.check({model_file: model_sha256, MANIFEST_FILE: hashlib.sha256(raw_manifest).hexdigest()})


def _differences(actual: Any, signed: Any) -> str:
    """The files that differ between two model-signing manifests, named as :func:`_short_diff` names them."""
    have = {r.identifier: r.digest for r in actual.resource_descriptors()}
    want = {r.identifier: r.digest for r in signed.resource_descriptors()}
    found = [f"{name} changed" for name in sorted(have.keys() & want.keys()) if have[name] != want[name]]
    if extra := sorted(have.keys() - want.keys()):
        found.append(f"files not signed: {', '.join(extra)}")
    if missing := sorted(want.keys() - have.keys()):
        found.append(f"signed files missing: {', '.join(missing)}")
    return "; ".join(found)


def _short_diff(text: str) -> str:
    """model-signing's mismatch text (a list's repr) reduced to the files that differ, no digests."""
    text = text.replace("\\", "")
    found = [f"{name} changed" for name in re.findall(r"Hash mismatch for '([^']+)'", text)]
    for label, pattern in (("files not signed", r"Extra files found in model '[^']*': ([^\"']+)"),
                           ("signed files missing", r"Missing files in model '[^']*': ([^\"']+)")):
        match = re.search(pattern, text)
        if match:
            found.append(f"{label}: {match.group(1)}")
    return "; ".join(found) or text[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signature.py", description="Verify a signed model directory.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="verify MODEL_DIR against trusted public keys; exit 8 if it fails")
    p.add_argument("model_dir", type=Path)
    p.add_argument("--trusted-keys", type=Path, default=os.environ.get(TRUST_DIR_ENV, IMAGE_TRUST_DIR),
                   help=f"PEM public key or directory of *.pub (env {TRUST_DIR_ENV}, "
                        f"default {IMAGE_TRUST_DIR})")
    args = parser.parse_args(argv)
    try:
        signer = verify(args.model_dir, args.trusted_keys)
    except SignatureError as exc:
        print(f"refusing the model: {exc}", file=sys.stderr)
        return 8
    print(f"model signature verified: {args.model_dir} signed by {signer.short}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
