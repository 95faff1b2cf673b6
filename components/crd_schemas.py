"""Validate custom resources (and the Helm values of the Argo Rollouts chart) the way the API would.

Pulumi's SDK has no types for custom resources, so the recording mocks check them against the
OpenAPI v3 schema of their CustomResourceDefinition instead: Argo Rollouts' CRDs, kept in
``../shared/schemas/argo-rollouts`` next to the repository (``MODELSHIP_CRD_SCHEMAS`` overrides
the directory). Validation is strict like ``kubectl apply --validate=strict``: the CRDs leave
``additionalProperties`` open, so every object schema that lists its properties is closed here
(except where the CRD says ``x-kubernetes-preserve-unknown-fields``); a misspelt key fails.

Used by :mod:`components.testing` and the tests; needs ``jsonschema`` and ``PyYAML`` (dev lock).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

CRD_FILES = {
    ("argoproj.io/v1alpha1", "Rollout"): "rollout-crd.yaml",
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "analysis-template-crd.yaml",
    ("argoproj.io/v1alpha1", "ClusterAnalysisTemplate"): "cluster-analysis-template-crd.yaml",
    ("argoproj.io/v1alpha1", "AnalysisRun"): "analysis-run-crd.yaml",
}
"""(apiVersion, kind) -> CRD file in the schema directory."""


class CrdSchemaError(RuntimeError):
    """No schema for a custom resource: its CRD is unknown or the schema directory is missing."""


def schema_dir() -> Path:
    env = os.environ.get("MODELSHIP_CRD_SCHEMAS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "schemas" / "argo-rollouts"


def strict(schema: Any) -> Any:
    """Copy of an OpenAPI schema with every listed-properties object closed to other keys."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@functools.cache
def served_version(api_version: str, kind: str) -> dict[str, Any]:
    """The CRD's entry for ``api_version`` (schema, subresources) from the schema directory."""
    import yaml

    name = CRD_FILES.get((api_version, kind))
    if name is None:
        known = ", ".join(f"{a} {k}" for a, k in CRD_FILES)
        raise CrdSchemaError(f"no CRD schema for {api_version} {kind}; known: {known}")
    path = schema_dir() / name
    if not path.is_file():
        raise CrdSchemaError(f"CRD schema {path} is missing (set MODELSHIP_CRD_SCHEMAS to the directory "
                             "holding Argo Rollouts' CRDs)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(path.read_text(), Loader=loader)
    group, _, version = api_version.partition("/")
    if crd["spec"]["group"] != group or crd["spec"]["names"]["kind"] != kind:
        raise CrdSchemaError(f"{path} is not the CRD of {api_version} {kind}")
    served = next((v for v in crd["spec"]["versions"] if v["name"] == version), None)
    if served is None:
        raise CrdSchemaError(f"{path} serves no version {version}")
    return served


@functools.cache
def validator(api_version: str, kind: str) -> Any:
    """A strict ``jsonschema`` validator for one custom resource kind."""
    import jsonschema

    served = served_version(api_version, kind)
    return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))


def errors(obj: dict[str, Any]) -> list[str]:
    """Every way ``obj`` (a whole custom resource, camelCase) breaks its CRD's schema."""
    found = validator(str(obj.get("apiVersion")), str(obj.get("kind"))).iter_errors(obj)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found)


def values_errors(values: Any, schema: dict[str, Any]) -> list[str]:
    """Every way Helm ``values`` break a chart's values ``schema``."""
    import jsonschema

    found = jsonschema.Draft7Validator(schema).iter_errors(values)
    return sorted(f"values.{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found)
