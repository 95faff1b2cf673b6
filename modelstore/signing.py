"""The model store's signing keys: where they live, how they are made, and the publish/fetch hooks.

Locally the private key is generated once (``python -m modelstore.signing keygen``, which bootstrap
runs) under ``~/.config/modelship/model-signing/`` (``$XDG_CONFIG_HOME`` respected), outside the
repository, mode 0600 in a 0700 directory; it never enters a build context, an image, a log or a
stack's state. Its public key is written to ``trusted/<fingerprint>.pub`` beside it: the keys that
fetch, the image build and the server accept. In the cloud the pipeline points
``MODELSHIP_SIGNING_KEY`` at a key it read from Key Vault for the publish step only, and
``MODELSHIP_TRUSTED_KEYS`` at the public keys committed for the stack (docs/azure.md).

Signing and verification themselves are :mod:`modelship_contract.signature` (OpenSSF ``model-signing``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from modelship_contract.manifest import MANIFEST_FILE
from modelship_contract.signature import (
    SIGNATURE_FILE,
    Check,
    SignatureError,
    Signer,
    fingerprint,
    open_signature,
    trusted_key_files,
)
from modelstore.errors import InvalidInput, ModelStoreError

SIGNING_KEY_ENV = "MODELSHIP_SIGNING_KEY"
"""Path of the PEM private key that publish signs with."""
TRUSTED_KEYS_ENV = "MODELSHIP_TRUSTED_KEYS"
"""A PEM public key or a directory of ``*.pub``: the keys fetch (and the image build) accept."""
KEY_FILE = "signing-key.pem"
TRUSTED_DIR = "trusted"

__all__ = [
    "SIGNATURE_FILE",
    "Check",
    "KeyPair",
    "SignatureError",
    "SignatureRefused",
    "Signer",
    "default_key_dir",
    "ensure_key",
    "export_trusted_keys",
    "sign_for_publish",
    "signing_key_path",
    "trusted_keys_path",
    "verify_fetched",
]


class SignatureRefused(ModelStoreError):
    """A model's signature is missing, from an unknown key, invalid, or does not match its files."""

    exit_code = 8

    def __init__(self, message: str, check: Check):
        super().__init__(message)
        self.check = check


def default_key_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "modelship" / "model-signing"


def signing_key_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(SIGNING_KEY_ENV) or default_key_dir(env) / KEY_FILE)


def trusted_keys_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(TRUSTED_KEYS_ENV) or default_key_dir(env) / TRUSTED_DIR)


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A signing key on disk and the directory of public keys that trusts it."""

    private_key: Path
    trusted_dir: Path
    fingerprint: str

    @property
    def short(self) -> str:
        return f"key sha256:{self.fingerprint[:16]}"

    @classmethod
    def create(cls, key_dir: Path) -> KeyPair:
        return ensure_key(key_dir)


def ensure_key(key_dir: Path | None = None) -> KeyPair:
    """Create an EC P-256 signing key in ``key_dir`` unless one exists; trust its public key.

    The private key is written 0600 through a temporary file in the 0700 directory, so no other
    user can read it at any moment.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_dir = Path(key_dir) if key_dir is not None else default_key_dir()
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_dir.chmod(0o700)
    private = key_dir / KEY_FILE
    if not private.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd, tmp = tempfile.mkstemp(prefix=".key.", dir=key_dir)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            os.link(tmp, private)  # fails if another process created the key meanwhile: keep theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    public_pem = _public_pem(private)
    fp = fingerprint(public_pem)
    trusted = key_dir / TRUSTED_DIR
    trusted.mkdir(exist_ok=True)
    pub = trusted / f"{fp[:16]}.pub"
    if not pub.exists():
        pub.write_bytes(public_pem)
    return KeyPair(private_key=private, trusted_dir=trusted, fingerprint=fp)


def _public_pem(private_key: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        # Never echo the file: it is the private key.
        raise InvalidInput(
            f"signing key {private_key} is not an unencrypted PEM private key ({type(exc).__name__})"
        ) from None
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_for_publish(model_dir: Path, model_file: str, key: Path | None = None) -> tuple[bytes, str]:
    """Sign the two files a version consists of; return the bundle's bytes and the key fingerprint.

    Only ``model_file`` and ``manifest.json`` are signed (other files in the directory are not
    published); the bundle is written to a temporary file, never into ``model_dir``.
    """
    key = Path(key) if key is not None else signing_key_path()
    if not key.is_file():
        raise InvalidInput(
            f"no model signing key at {key}: create one with `python -m modelstore.signing keygen` "
            f"(bootstrap does), or set {SIGNING_KEY_ENV} to a PEM EC private key"
        )
    fp = fingerprint(_public_pem(key))
    from model_signing import hashing, signing

    others = [p.name for p in Path(model_dir).iterdir() if p.name not in (model_file, MANIFEST_FILE)]
    config = hashing.Config().set_ignored_paths(paths=sorted({*others, SIGNATURE_FILE}))
    with tempfile.TemporaryDirectory(prefix="modelship-sign-") as tmp:
        out = Path(tmp) / SIGNATURE_FILE
        try:
            signing.Config().set_hashing_config(config).use_elliptic_key_signer(private_key=key).sign(
                Path(model_dir), out)
        except ValueError as exc:
            raise InvalidInput(f"cannot sign {model_dir} with {key}: {exc}") from None
        return out.read_bytes(), fp


def verify_fetched(model_dir: Path, ref: str, where: str, trusted: Path | None = None,
                   model: tuple[str, str, bytes] | None = None) -> Signer:
    """Verify a fetched (staged) model directory; raise :class:`SignatureRefused` naming the check.

    ``model``: ``(model_file, its sha256, manifest.json's raw bytes)`` the fetch has already
    verified, which model-signing then takes instead of reading those files again (see
    ``SignedModel.check_model``).
    """
    trusted = Path(trusted) if trusted is not None else trusted_keys_path()
    try:
        signed = open_signature(model_dir, trusted)
        return signed.check_model(*model) if model is not None else signed.check()
    except SignatureError as exc:
        raise SignatureRefused(
            f"refusing {ref} from {where}: {exc}. The destination was left unchanged.", exc.check
        ) from None


def export_trusted_keys(dest: Path, trusted: Path | None = None) -> list[Path]:
    """Copy the trusted public keys into ``dest`` (a build context's ``trust/``), replacing old ones."""
    trusted = Path(trusted) if trusted is not None else trusted_keys_path()
    keys = trusted_key_files(trusted)
    if not keys:
        raise InvalidInput(
            f"no trusted public key in {trusted}: run `python -m modelstore.signing keygen` or set "
            f"{TRUSTED_KEYS_ENV}"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.pub"):
        old.unlink()
    out = []
    for key in keys:
        target = dest / f"{fingerprint(key.read_bytes())[:16]}.pub"
        shutil.copyfile(key, target)
        target.chmod(0o644)
        out.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelstore.signing",
                                     description="Model signing keys and verification.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keygen", help="create the local signing key unless it exists (idempotent)")
    p.add_argument("--dir", type=Path, default=None, help=f"key directory (default {default_key_dir()})")
    p = sub.add_parser("verify", help="verify a model directory against the trusted keys")
    p.add_argument("model_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            keys = ensure_key(args.dir)
            print(f"model signing key {keys.private_key} ({keys.short}); trusted keys in {keys.trusted_dir}")
            return 0
        signer = verify_fetched(args.model_dir, str(args.model_dir), "the local disk")
        print(f"{args.model_dir}: signature verified, signed by {signer.short}")
        return 0
    except ModelStoreError as exc:
        print(f"modelstore.signing: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
