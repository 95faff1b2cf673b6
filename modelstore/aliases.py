"""Named aliases of a model (``production``, ``staging``...) and the record of every move.

Blob layout, beside the versions (see :mod:`modelstore.store`)::

    NAME/_aliases/ALIAS.json      one document per alias: where it points now + every move

``_aliases`` can never be a version (versions start with a letter or digit), so the document never
shadows one. An alias is moved exactly like the ``latest`` pointer: read the document and its ETag,
append the move, write it back with ``If-Match`` (``If-None-Match: *`` for a new alias), and on a
conflict re-read and re-check. A blob upload replaces the whole document atomically, so concurrent
promoters can neither lose a move nor leave half of one; each move carries ``seq`` and ``from``, so a
reader can check the chain is unbroken.

A move records who (the signed-in identity), when, why, whether it was forced, and the evaluation
report it relied on (blob name and sha256), so ``history --alias`` answers "why does production run
this model" without another system.

**Rollback moves.** When a canary rejects the version an alias released (the local canary of
``make up``, or Argo Rollouts aborting the cloud canary), :meth:`Aliases.roll_back` moves the alias
back to the version that kept serving, in the same conditional write, only if the alias still names
the rejected version (someone who moved it meanwhile made a newer decision: it is left alone). The
move has ``kind: rollback``, ``who`` is the canary (and the identity that wrote the record), ``why``
the verdict with its figures, and ``report`` the canary's evidence. The document also marks the
version ``rejected`` for this alias: ``promote`` refuses to move the alias to it again, and ``make
watch`` will not release a move to it, unless the move is ``--force --reason`` (which clears the
mark and records the rejection it overrode). A new evaluation does not clear it: the gate scored
the same bytes on the same golden rows before, and the canary judged them on live traffic since.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from modelship_contract.manifest import ALIAS_DIR, is_alias_name
from modelstore.connection import backoff, write_json_if_unchanged
from modelstore.errors import GateRefused, IntegrityError, InvalidInput, ModelStoreError, NotFound
from modelstore.store import ModelStore, _now, default_publisher

log = logging.getLogger(__name__)

ALIAS_SCHEMA = 1
MAX_REASON = 1000
MAX_EVIDENCE = 16_000
"""Characters of a canary's evidence a rollback move may carry (the whole record stays where it was)."""
ROLLBACK = "rollback"
"""``kind`` of a move a canary made (a promotion's move has no ``kind``)."""

Gate = Callable[[dict[str, Any] | None], dict[str, Any] | None]
"""Called with the alias's current move (None for a new alias) right before each write attempt;
returns the evaluation report reference to record, or raises to refuse the move."""


def validate_alias(alias: str) -> str:
    if not is_alias_name(alias):
        raise InvalidInput(
            f"alias {alias!r} is not allowed: use a lowercase letter then up to 62 lowercase letters, "
            "digits and '-' (for example 'production'); 'latest' is reserved for the latest pointer"
        )
    return alias


def alias_blob_name(name: str, alias: str) -> str:
    return f"{name}/{ALIAS_DIR}/{alias}.json"


@dataclasses.dataclass(frozen=True)
class AliasInfo:
    """Where one alias points now."""

    name: str
    alias: str
    version: str
    sha256: str
    moved_at: str
    moved_by: str
    moves: int
    """How many moves the alias has had (the ``seq`` of the current one)."""
    rejected: tuple[str, ...] = ()
    """Versions a canary rolled back from this alias (not released again without ``--force``)."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def signed_in_identity(store: ModelStore) -> str:
    """Who is moving the alias: the Entra ID identity the store signed in with, when it has one
    (``upn``, else the app id of a service principal or managed identity, else the object id);
    otherwise ``MODELSHIP_PUBLISHER`` or ``user@host`` as for publish (the emulator's shared key
    identifies no one)."""
    credential = getattr(store._container, "credential", None)
    if credential is not None and hasattr(credential, "get_token"):
        try:
            token = credential.get_token("https://storage.azure.com/.default").token
            who = identity_from_token(token)
        except Exception as exc:  # an identity we cannot read must not block the move itself
            log.warning("could not read the signed-in identity (%s); recording the publisher name",
                        type(exc).__name__)
            who = None
        if who:
            return who
    return default_publisher()


def identity_from_token(token: str) -> str | None:
    """The caller's name from an Entra ID access token's claims (the token is ours; not verified)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    for key, prefix in (("upn", ""), ("unique_name", ""), ("appid", "app:"), ("azp", "app:"),
                        ("oid", "oid:")):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return (prefix + value).encode("ascii", "replace").decode("ascii")[:200]
    return None


class Aliases:
    """Read and move the aliases of the models in one :class:`~modelstore.store.ModelStore`."""

    def __init__(self, store: ModelStore):
        self.store = store

    # -- read ---------------------------------------------------------------------------------

    def read(self, name: str, alias: str) -> tuple[dict[str, Any] | None, str | None]:
        """The alias document and its ETag, or (None, None) if the alias does not exist."""
        blob = self.store._container.get_blob_client(alias_blob_name(name, alias))
        try:
            downloader = blob.download_blob()
            raw = downloader.readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            return None, None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("moves"), list) or not doc["moves"]:
                raise ValueError("no moves")
            current = doc.get("current")
            if not (isinstance(current, dict) and all(isinstance(current.get(k), str)
                                                      for k in ("to", "to_sha256", "who", "when"))
                    and isinstance(current.get("seq"), int)):
                raise ValueError("'current' is not a move with 'to', 'to_sha256', 'who', 'when', 'seq'")
        except ValueError as exc:
            raise IntegrityError(
                f"alias record {alias_blob_name(name, alias)} in {self.store.where} is corrupt ({exc}); "
                "restore it from a backup or move the alias again with --force"
            ) from None
        return doc, downloader.properties.etag

    def get(self, name: str, alias: str) -> AliasInfo | None:
        """Where ``name@alias`` points, or None if the model has no such alias."""
        validate_alias(alias)
        with self.store._azure_errors():
            doc, _ = self.read(name, alias)
        return _info(name, alias, doc) if doc else None

    def resolve(self, name: str, alias: str) -> str | None:
        """The version ``name@alias`` names, or None if there is no such alias."""
        info = self.get(name, alias)
        return info.version if info else None

    def list(self, name: str) -> list[AliasInfo]:
        """Every alias of ``name``, by alias name."""
        prefix = f"{name}/{ALIAS_DIR}/"
        found = []
        with self.store._azure_errors():
            for blob in self.store._container.list_blobs(name_starts_with=prefix):
                alias = blob.name[len(prefix):].removesuffix(".json")
                if not blob.name.endswith(".json") or not is_alias_name(alias):
                    continue
                doc, _ = self.read(name, alias)
                if doc:
                    found.append(_info(name, alias, doc))
        return sorted(found, key=lambda a: a.alias)

    def history(self, name: str, alias: str) -> list[dict[str, Any]]:
        """Every move of ``name@alias``, oldest first."""
        validate_alias(alias)
        with self.store._azure_errors():
            doc, _ = self.read(name, alias)
        if doc is None:
            known = ", ".join(a.alias for a in self.list(name)) or "none"
            raise NotFound(f"model '{name}' has no alias '{alias}' in {self.store.where}; aliases: {known}")
        return list(doc["moves"])

    # -- move ---------------------------------------------------------------------------------

    def move(
        self,
        name: str,
        alias: str,
        version: str,
        reason: str,
        *,
        gate: Gate | None = None,
        forced: bool = False,
        who: str | None = None,
    ) -> dict[str, Any]:
        """Point ``name@alias`` at ``name@version`` and record the move; returns the move record.

        ``gate`` runs against the alias's current move before every write attempt, so a move that
        lost a race is judged again against whatever the winner left (a report against the old
        model no longer counts). Moving an alias to the version it already names is refused, and so
        is moving it to a version a canary rejected for it, unless ``forced``.
        """
        validate_alias(alias)
        reason = _reason(reason)
        manifest = self._version(name, alias, version)
        who = who or signed_in_identity(self.store)

        def change(doc: dict[str, Any] | None) -> dict[str, Any]:
            current = doc["current"] if doc else None
            if current is not None and current["to"] == version:
                raise InvalidInput(f"{name}@{alias} already names {version}; nothing to move")
            rejection = _rejected(doc).get(version)
            if rejection is not None and not forced:
                raise GateRefused(
                    f"refusing to move {name}@{alias} to {version}: its canary rejected it on "
                    f"{rejection['when']} ({rejection['why']}). A new evaluation cannot undo a verdict on "
                    "live traffic; to release it again anyway, promote with --force --reason \"why\" "
                    "(recorded in the alias history)"
                )
            report = gate(current) if gate is not None else None
            record = _record(current, version, manifest.sha256, who, reason, forced, report)
            if rejection is not None:
                record["overrides_rejection"] = rejection
                del doc["rejected"][version]
            return record

        record = self._write(name, alias, change)
        log.info("%s@%s: %s -> %s by %s", name, alias, record["from"], version, who)
        return record

    def roll_back(
        self,
        name: str,
        alias: str,
        rejected: str,
        to: str,
        reason: str,
        *,
        by: str,
        evidence: dict[str, Any],
        serving_sha256: str | None = None,
    ) -> RollBack:
        """After a canary rejected ``name@rejected``: move ``alias`` back to ``to`` (the version that
        kept serving) and mark ``rejected``, only if the alias still names ``rejected``.

        ``by`` names the canary (``canary:local``, ``canary:argo-rollouts``); the record's ``who`` is
        it and the identity that wrote the record. ``evidence`` (the verdict, its figures, where the
        whole record is) becomes the move's ``report``. ``serving_sha256``: the bytes that serve, as
        the deployment reports them; if they are not ``name@to``'s, nothing is written.
        """
        validate_alias(alias)
        reason = _reason(reason)
        if rejected == to:
            raise InvalidInput(f"the rejected version and the serving one are both {to!r}: "
                               "nothing to roll back")
        if not isinstance(evidence, dict) or len(json.dumps(evidence)) > MAX_EVIDENCE:
            raise InvalidInput(f"the canary's evidence must be a JSON object under {MAX_EVIDENCE} characters")
        manifest = self._version(name, alias, to)
        if serving_sha256 is not None and serving_sha256 != manifest.sha256:
            raise IntegrityError(
                f"the serving model's sha256 {serving_sha256[:12]} is not {name}@{to}'s "
                f"({manifest.sha256[:12]}): "
                f"{name}@{alias} was not moved; move it by hand to the version that serves"
            )
        who = f"{by} via {signed_in_identity(self.store)}"
        left: list[dict[str, Any] | None] = []

        def change(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            current = doc["current"] if doc else None
            if current is None or current["to"] != rejected:
                left.append(current)
                return None  # someone moved it meanwhile: theirs is the newer decision
            record = _record(current, to, manifest.sha256, who, reason, False, evidence)
            record["kind"] = ROLLBACK
            doc.setdefault("rejected", {})[rejected] = {
                "sha256": current["to_sha256"], "seq": record["seq"], "when": record["when"],
                "who": who, "why": reason,
            }
            return record

        record = self._write(name, alias, change)
        if record is None:
            current = left[-1]
            log.warning("%s@%s no longer names %s: left as it is", name, alias, rejected)
            return RollBack(False, None, current)
        log.info("%s@%s: rolled back %s -> %s by %s", name, alias, rejected, to, who)
        return RollBack(True, record, record)

    # -- the one conditional write ----------------------------------------------------------------

    def _version(self, name: str, alias: str, version: str) -> Any:
        """The manifest of ``name@version``; refuses another alias, and an alias named like a version."""
        manifest, _ = self.store.resolve(f"{name}@{version}")
        if manifest.version != version:
            raise InvalidInput(f"{name}@{version} is not a version; promote a version, not another alias")
        if alias in {v.version for v in self.store.versions(name)}:
            raise InvalidInput(
                f"alias {alias!r} is also a version of '{name}'; pick an alias name that is not a version"
            )
        return manifest

    def _write(self, name: str, alias: str,
               change: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Read the alias document, let ``change`` build the next move (appended here), write it back
        only if the document is unchanged; on a lost race re-read and ``change`` again. ``change``
        returns None to write nothing (then None is returned) or raises to refuse."""
        store = self.store
        blob = store._container.get_blob_client(alias_blob_name(name, alias))
        with store._azure_errors():
            for attempt in range(store.max_pointer_attempts):
                doc, etag = self.read(name, alias)
                record = change(doc)
                doc = doc or {"schema": ALIAS_SCHEMA, "name": name, "alias": alias, "moves": []}
                if record is None:
                    return None
                doc["moves"].append(record)
                doc["current"] = record
                if write_json_if_unchanged(blob, doc, etag):
                    return record
                log.debug("alias %s@%s moved concurrently (attempt %d)", name, alias, attempt + 1)
                backoff(attempt)
        raise ModelStoreError(
            f"{name}@{alias} could not be moved after {store.max_pointer_attempts} concurrent updates; "
            "nothing was recorded: run the command again"
        )


@dataclasses.dataclass(frozen=True)
class RollBack:
    """What :meth:`Aliases.roll_back` did."""

    moved: bool
    record: dict[str, Any] | None
    """The rollback move, when it was written."""
    current: dict[str, Any] | None
    """The alias's current move afterwards (someone else's, when ``moved`` is False)."""


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a move needs a reason: pass --reason \"why this version\"")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is {len(reason)} characters; keep it under {MAX_REASON}")
    return reason


def _rejected(doc: dict[str, Any] | None) -> dict[str, Any]:
    rejected = (doc or {}).get("rejected")
    return rejected if isinstance(rejected, dict) else {}


def _record(current: dict[str, Any] | None, version: str, sha256: str, who: str, reason: str, forced: bool,
            report: dict[str, Any] | None) -> dict[str, Any]:
    """The next move after ``current`` (None: the alias is new)."""
    return {
        "seq": (current["seq"] + 1) if current else 1,
        "from": current["to"] if current else None,
        "from_sha256": current["to_sha256"] if current else None,
        "to": version,
        "to_sha256": sha256,
        "who": who,
        "when": _now(),
        "why": reason,
        "forced": forced,
        "report": report,
    }


def check_chain(moves: list[dict[str, Any]]) -> None:
    """Raise IntegrityError unless the moves form one unbroken chain (seq 1..n, each from = previous to)."""
    previous = None
    for i, move in enumerate(moves, start=1):
        if move.get("seq") != i or move.get("from") != previous:
            raise IntegrityError(
                f"alias history is broken at move {i}: seq {move.get('seq')!r}, from {move.get('from')!r}, "
                f"expected seq {i} from {previous!r}"
            )
        previous = move.get("to")


def _info(name: str, alias: str, doc: dict[str, Any]) -> AliasInfo:
    cur = doc["current"]
    return AliasInfo(name=name, alias=alias, version=cur["to"], sha256=cur["to_sha256"],
                     moved_at=cur["when"], moved_by=cur["who"], moves=cur["seq"],
                     rejected=tuple(sorted(_rejected(doc))))

