"""Check a resource's recorded inputs against the installed Pulumi SDK's input types.

Pulumi's mocks accept any input, so a misspelled key (``allowBlobPublicAcess``) or an enum value
the provider does not know would pass every offline test and fail only against Azure. This
module walks the inputs that reach the engine (camelCase, as the mocks record them) against the
SDK's own ``...Args`` input types, recursively:

* every key must be a property of the SDK type at that path (nested input types included);
* where the SDK types a value as one of its enums (``Union[str, PrincipalType]``), the value must
  be one of the enum's values, even though the SDK also lets a plain ``str`` through;
* ``Literal`` types (``apiVersion``, ``kind``) must match; scalars must have the right JSON type.

The SDK type for a token comes from the packages' module layout
(``azure-native:authorization:RoleAssignment`` -> ``pulumi_azure_native.authorization.
RoleAssignmentArgs``), so a token the installed SDKs do not have is itself an error.
Used by :mod:`components.testing`; standard library plus the installed SDKs only.
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import importlib
import inspect
import re
import typing
from typing import Any

import pulumi
from pulumi import _types as pulumi_types

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""The engine's placeholder for a value unknown during preview."""


DOCUMENTED_OPEN_ENUM_VALUES: dict[str, frozenset[str]] = {
    # The REST spec's ``Known*`` enums are open (``modelAsString``); the SDK lists only some values.
    # Managed Prometheus routes the stream its prometheusForwarder source emits through a data flow:
    # Microsoft's AKS onboarding template ("Enable Prometheus metrics collection", ARM/Bicep, DCR
    # ``dataFlows[].streams: ['Microsoft-PrometheusMetrics']``,
    # https://learn.microsoft.com/azure/azure-monitor/containers/kubernetes-monitoring-enable).
    "KnownDataFlowStreams": frozenset({"Microsoft-PrometheusMetrics"}),
}
"""Values an SDK enum omits that Azure documents for that property; each entry says where."""


class SdkTypeError(ValueError):
    """A recorded input does not fit the installed SDK's type for that resource."""


def _k8s_module(group_version: str) -> str:
    group, _, version = group_version.rpartition("/")
    return f"pulumi_kubernetes.{group.split('.')[0] or 'core'}.{version}"


def args_class(token: str) -> type | None:
    """The SDK ``...Args`` input type for a resource type token, or None for a CRD kind.

    Raises :class:`SdkTypeError` for a token no installed SDK declares.
    """
    pkg, _, rest = token.partition(":")
    module_name, _, name = rest.rpartition(":")
    if pkg == "pulumi" and module_name == "providers":
        module, cls_name = {"kubernetes": ("pulumi_kubernetes", "ProviderArgs"),
                            "azure-native": ("pulumi_azure_native", "ProviderArgs"),
                            "docker-build": ("pulumi_docker_build", "ProviderArgs"),
                            "command": ("pulumi_command", "ProviderArgs")}.get(name, ("", ""))
    elif pkg == "azure-native":
        module, cls_name = f"pulumi_azure_native.{module_name}", f"{name}Args"
    elif pkg == "docker-build" and module_name == "index":
        module, cls_name = "pulumi_docker_build", f"{name}Args"
    elif pkg == "kubernetes":
        module, cls_name = _k8s_module(module_name), f"{name}Args"
    elif pkg == "command":
        module, cls_name = f"pulumi_command.{module_name}", f"{name}Args"
    else:
        module, cls_name = "", ""
    try:
        found = getattr(importlib.import_module(module), cls_name, None) if module else None
    except ImportError:
        found = None
    if found is None:
        if pkg == "kubernetes":
            return None  # a custom resource: its CRD schema is the contract, not the SDK
        raise SdkTypeError(f"resource type {token!r} is not declared by any installed Pulumi SDK")
    return found


@functools.cache
def _properties(cls: type) -> dict[str, Any]:
    return dict(pulumi_types.input_type_types(cls))


def _is_input_type(typ: Any) -> bool:
    return isinstance(typ, type) and pulumi_types.is_input_type(typ)


def _flatten(typ: Any) -> list[Any]:
    """The alternatives of a (possibly nested) Union, without Awaitable/Output/None wrappers."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:
        return [alt for arg in typing.get_args(typ) for alt in _flatten(arg)]
    if origin in (collections.abc.Awaitable, pulumi.Output) or typ is type(None):
        return []
    if typ is pulumi.Output:
        return []
    return [typ]


def _describe(typ: Any) -> str:
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        return f"one of {', '.join(repr(m.value) for m in typ)}"
    return getattr(typ, "__name__", None) or str(typ)


def check_inputs(token: str, inputs: dict[str, Any], name: str = "") -> list[str]:
    """Every way ``inputs`` (camelCase) breaks the SDK type of ``token``; empty when they fit.

    Each message names the resource (``token name``), the path and what is allowed there.
    """
    cls = args_class(token)
    if cls is None:
        return []
    errors: list[str] = []
    _check_object(inputs, cls, "", errors)
    where = f"{token} {name}" if name else token
    return [f"{where}: {e}" for e in errors]


def check_invoke(token: str, args: dict[str, Any]) -> list[str]:
    """Every way an invoke's ``args`` (camelCase) break the SDK function of ``token``."""
    pkg, _, rest = token.partition(":")
    module_name, _, name = rest.rpartition(":")
    if pkg != "azure-native":
        return []
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    func = getattr(importlib.import_module(f"pulumi_azure_native.{module_name}"), snake, None)
    if func is None:
        return [f"{token}: no function {snake} in pulumi_azure_native.{module_name}"]
    hints = typing.get_type_hints(func)
    params = [p for p in inspect.signature(func).parameters if p != "opts"]
    errors: list[str] = []
    for key, value in args.items():
        param = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        if param not in params:
            errors.append(f"{token}: {key}: unknown argument of {snake}; allowed: {', '.join(params)}")
        else:
            _check_value(value, hints.get(param, Any), key, errors)
    return errors


def _check_object(value: Any, cls: type, path: str, errors: list[str]) -> None:
    if not isinstance(value, dict):
        errors.append(f"{path or '<inputs>'}: expected an object ({cls.__name__}), got {value!r}")
        return
    props = _properties(cls)
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in props:
            errors.append(f"{where}: unknown property of {cls.__name__}; allowed: {', '.join(sorted(props))}")
            continue
        _check_value(item, props[key], where, errors)


def _check_value(value: Any, typ: Any, path: str, errors: list[str]) -> None:
    if value is None or value == UNKNOWN:
        return
    alternatives = _flatten(typ)
    if not alternatives or any(a is Any or a is object for a in alternatives):
        return
    enums = [a for a in alternatives if isinstance(a, type) and issubclass(a, enum.Enum)]
    if enums and isinstance(value, str):
        # The SDK types these as Union[str, Enum] so new API values are not blocked client-side;
        # here only the values the installed SDK documents pass.
        allowed = {str(m.value) for e in enums for m in e} | {
            v for e in enums for v in DOCUMENTED_OPEN_ENUM_VALUES.get(e.__name__, ())}
        if value not in allowed:
            errors.append(f"{path}: {value!r} is not an allowed value; allowed: {', '.join(sorted(allowed))}")
        return
    failures: list[list[str]] = []
    for alt in alternatives:
        found: list[str] = []
        _check_single(value, alt, path, found)
        if not found:
            return
        failures.append(found)
    # No alternative fits: report the one that got furthest (fewest complaints).
    errors.extend(min(failures, key=len))


def _check_single(value: Any, typ: Any, path: str, errors: list[str]) -> None:
    origin = typing.get_origin(typ)
    if origin is typing.Literal:
        if value not in typing.get_args(typ):
            errors.append(f"{path}: {value!r} must be one of {typing.get_args(typ)}")
        return
    if _is_input_type(typ):
        _check_object(value, typ, path, errors)
        return
    if origin in (collections.abc.Sequence, list, tuple):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {value!r}")
            return
        (item_type,) = typing.get_args(typ)[:1] or (Any,)
        for i, item in enumerate(value):
            _check_value(item, item_type, f"{path}[{i}]", errors)
        return
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map, got {value!r}")
            return
        args = typing.get_args(typ)
        item_type = args[1] if len(args) == 2 else Any
        for key, item in value.items():
            _check_value(item, item_type, f"{path}.{key}", errors)
        return
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        if value not in {m.value for m in typ}:
            errors.append(f"{path}: {value!r} is not {_describe(typ)}")
        return
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    elif typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif typ is str:
        ok = isinstance(value, str)
    elif typ in (dict, typing.Dict):  # noqa: UP006 - free-form objects in the SDK
        ok = isinstance(value, dict)
    else:
        ok = True  # a type this walker does not model (kept permissive, never silently strict)
    if not ok:
        errors.append(f"{path}: expected {_describe(typ)}, got {value!r}")
