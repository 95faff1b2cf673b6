"""Evaluation reports stored beside the candidate version, and the promotion gate that reads them.

Blob layout::

    NAME/VERSION/evaluations/<when>-<sha256[:16]>.json     one report per evaluation (create-only)

A report (written by :mod:`modelstore.evaluate`) names the candidate, the model it was compared
against and the golden data set, each with its sha256, plus the metrics and the verdict. The gate
accepts a move of an alias only with a passing report whose candidate is the very bytes being
promoted and whose baseline is the very bytes the alias names *at the moment of the write*; a
report against anything else (an older production, another data set's baseline for a new alias is
fine) does not count. ``--force --reason`` skips the gate, and the move records that it was forced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContentSettings

from modelship_contract.manifest import EVALUATIONS_DIR, ModelManifest
from modelstore.errors import GateRefused, IntegrityError
from modelstore.store import ModelStore, _now

log = logging.getLogger(__name__)

REPORT_DIR = EVALUATIONS_DIR
REPORT_SCHEMA = 1
REPORT_KIND = "modelship-evaluation"
PASS = "pass"
FAIL = "fail"


def report_prefix(manifest: ModelManifest) -> str:
    return f"{manifest.name}/{manifest.version}/{REPORT_DIR}/"


def encode_report(report: dict[str, Any]) -> bytes:
    return (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()


def store_report(store: ModelStore, candidate: ModelManifest, report: dict[str, Any]) -> dict[str, Any]:
    """Write ``report`` beside the candidate (create-only); returns the reference a move records."""
    data = encode_report(report)
    digest = hashlib.sha256(data).hexdigest()
    stamp = _now().replace(":", "").replace("-", "")
    blob_name = f"{report_prefix(candidate)}{stamp}-{digest[:16]}.json"
    # ResourceExistsError: the same bytes in the same millisecond, already stored.
    with store._azure_errors(), contextlib.suppress(ResourceExistsError):
        store._container.get_blob_client(blob_name).upload_blob(
            data, overwrite=False, content_settings=ContentSettings(content_type="application/json"))
    return report_ref(blob_name, digest, report)


def report_ref(blob_name: str, digest: str, report: dict[str, Any]) -> dict[str, Any]:
    """What an alias move records about the report it relied on."""
    against = report.get("against") or {}
    return {
        "blob": blob_name,
        "sha256": digest,
        "verdict": report.get("verdict"),
        "against": against.get("ref"),
        "dataset": (report.get("dataset") or {}).get("ref"),
    }


def reports(store: ModelStore, candidate: ModelManifest) -> list[tuple[str, str, dict[str, Any]]]:
    """Every report stored beside ``candidate`` as (blob name, sha256, report), oldest first.

    A report that is not valid JSON or describes other bytes than the candidate's is an integrity
    error: the store was written by something other than ``evaluate``.
    """
    found = []
    with store._azure_errors():
        for blob in store._container.list_blobs(name_starts_with=report_prefix(candidate)):
            data = store._container.get_blob_client(blob.name).download_blob().readall()
            try:
                report = json.loads(data)
                if not isinstance(report, dict) or report.get("kind") != REPORT_KIND:
                    raise ValueError(f"not a {REPORT_KIND} report")
                cand = report.get("candidate") or {}
            except ValueError as exc:
                raise IntegrityError(
                    f"evaluation report {blob.name} in {store.where} is invalid: {exc}") from None
            if cand.get("sha256") != candidate.sha256:
                raise IntegrityError(
                    f"evaluation report {blob.name} in {store.where} describes a model with sha256 "
                    f"{cand.get('sha256')}, not {candidate.ref} ({candidate.sha256}); it was tampered with"
                )
            found.append((blob.name, hashlib.sha256(data).hexdigest(), report))
    return sorted(found, key=lambda r: r[0])


def passing_report(
    store: ModelStore, candidate: ModelManifest, current: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The newest passing report of ``candidate`` against the alias's current model, as a move records
    it; for a new alias (``current`` None), the newest passing report of any kind."""
    for blob_name, digest, report in reversed(reports(store, candidate)):
        if report.get("verdict") != PASS:
            continue
        against = report.get("against")
        if current is None or (against and against.get("sha256") == current["to_sha256"]):
            return report_ref(blob_name, digest, report)
    return None


def promotion_gate(store: ModelStore, candidate: ModelManifest, alias: str, *, force: bool):
    """The ``gate`` for :meth:`modelstore.aliases.Aliases.move`: a passing report, or ``force``."""

    def gate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        found = passing_report(store, candidate, current)
        if found is not None or force:
            if found is None:
                log.warning("%s@%s: promotion of %s forced without a passing report",
                            candidate.name, alias, candidate.version)
            return found
        if current is None:
            wanted = (f"`modelship-models evaluate {candidate.ref} --dataset DATASET@VERSION` "
                      f"(a new alias needs a passing report of the candidate alone)")
        else:
            wanted = (f"`modelship-models evaluate {candidate.ref} --against {alias} "
                      f"--dataset DATASET@VERSION` ({candidate.name}@{alias} names "
                      f"{current['to']}, sha256 {current['to_sha256'][:12]})")
        failing = [r for _, _, r in reports(store, candidate)
                   if current is not None and (r.get("against") or {}).get("sha256") == current["to_sha256"]]
        why = f"; the last report against it says: {failing[-1].get('reason')}" if failing else ""
        raise GateRefused(
            f"refusing to move {candidate.name}@{alias} to {candidate.version}: no passing evaluation "
            f"report against the model the alias names{why}. Run {wanted}, or override with "
            "--force --reason \"why\" (recorded in the alias history)"
        )

    return gate
