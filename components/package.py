"""The public components as a Pulumi component package, for programs in any Pulumi language.

``provider/`` (``PulumiPlugin.yaml``, ``runtime: python``) hosts :data:`COMPONENTS` with the SDK's
``component_provider_host``: TypeScript, Go, C#, Java and YAML programs run
``pulumi package add <this repository>/provider`` and get ``modelship:index:ModelStore``,
``...:ContainerRegistry``, ``...:KubernetesCluster``, ``...:ModelImage`` and ``...:ModelService``.
The schema is what the SDK's analyzer (``pulumi.provider.experimental``) infers from the Args
dataclasses and the components' output annotations; nothing is written twice.

The hosted classes are the Python components, adapted in three ways the analyzer and the provider
need, without touching the components that the stack and Python callers use:

* **Annotations resolved.** The component modules use ``from __future__ import annotations``, so
  their annotations are strings the analyzer cannot follow. Each Args dataclass is given a *view*
  with the resolved types (same name, module and qualname, so the analyzer still reads each field's
  docstring from the original source).
* **Same validation.** The provider hands ``__init__`` a plain dict; the hosted ``__init__`` builds
  the real Args dataclass from it (nested dataclasses too), so ``__post_init__`` refuses a bad value
  with the same message a Python caller gets, before any resource is registered.
* **Schema token.** A component package's resources are ``<package>:index:<Class>``; the Python
  components register as ``modelship:<module>:<Class>`` (their URNs in existing stacks depend on
  it), so the hosted class registers under the package token instead.

What the schema cannot express (:data:`LEFT_OUT`): ``ModelServiceArgs.depends_on`` is a list of any
Pulumi resources (the AcrPull role assignment, the chart installing the Rollout CRDs), and the
analyzer only knows references to resources of one named type; a program in another language passes
them as the ``dependsOn`` resource option, which the hosted ModelService hands to the same field,
so its workload still waits for them. ``CanaryArgs.definition`` (steps as a tuple of dataclasses,
PromQL templates) is the project's canary contract: the package uses its default, the same one the
Python stack and ``make up`` use.
"""

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

import pulumi

from components.cluster import KubernetesCluster, KubernetesClusterArgs
from components.image import ModelImage, ModelImageArgs
from components.registry import ContainerRegistry, ContainerRegistryArgs
from components.service import ModelService, ModelServiceArgs
from components.store import ModelStore, ModelStoreArgs

PACKAGE = "modelship"
"""The package name: schema tokens are ``modelship:index:<Class>``."""

LEFT_OUT = {
    "depends_on": "set from the dependsOn resource option",
    "definition": "the default canary analysis definition (modelship_contract.canary), as in Python",
}
"""Args fields the schema leaves out (the analyzer cannot express their types), and what takes their place."""


class _PackageToken(pulumi.ComponentResource):
    """Registers a hosted component under ``<package>:index:<Class>`` (see the module docstring).

    It sits after the Python component in the hosted class's MRO, so the component's own
    ``super().__init__(token, ...)`` arrives here and the token is replaced.
    """

    def __init__(self, t: str, name: str, props: Mapping[str, Any] | None = None,
                 opts: pulumi.ResourceOptions | None = None, remote: bool = False) -> None:
        super().__init__(f"{PACKAGE}:index:{type(self).__name__}", name, props, opts, remote)


_VIEWS: dict[type, type] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The annotations ``cls`` itself declares, evaluated (``pulumi.Input``'s own forward reference
    ``"Output[T]"`` stays one, as the analyzer expects)."""
    return inspect.get_annotations(cls, eval_str=True)


def _dataclass_in(hint: Any) -> type | None:
    """The Args dataclass that ``hint`` is, or is optionally; None otherwise."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    candidates = typing.get_args(hint) if union else (hint,)
    found = [c for c in candidates if isinstance(c, type) and dataclasses.is_dataclass(c)]
    return found[0] if found else None


def _is_optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def schema_view(args_type: type) -> type:
    """``args_type`` with resolved annotations and without the fields in :data:`LEFT_OUT`."""
    if args_type in _VIEWS:
        return _VIEWS[args_type]
    hints = _hints(args_type)
    annotations: dict[str, Any] = {}
    for f in dataclasses.fields(args_type):
        if f.name in LEFT_OUT:
            continue
        hint = hints[f.name]
        nested = _dataclass_in(hint)
        if nested is not None:
            hint = schema_view(nested) | None if hint is not nested else schema_view(nested)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        # The analyzer marks a field optional only when its type is: a field with a default may be
        # left out (the provider then passes nothing and the dataclass default applies).
        annotations[f.name] = hint | None if has_default and not _is_optional(hint) else hint
    doc = args_type.__doc__
    if doc and doc.startswith(f"{args_type.__name__}("):
        doc = None  # the signature @dataclass writes when the class has no docstring
    view = type(args_type.__name__, (), {
        "__annotations__": annotations, "__doc__": doc,
        "__module__": args_type.__module__, "__qualname__": args_type.__qualname__,
    })
    _VIEWS[args_type] = view
    return view


def build_args(args_type: type, values: Any, opts: pulumi.ResourceOptions | None = None) -> Any:
    """The real Args dataclass from what the provider passes (a dict of Python names)."""
    if isinstance(values, args_type):
        return values
    if not isinstance(values, Mapping):
        raise TypeError(f"{args_type.__name__}: expected the component's inputs, got {type(values).__name__}")
    hints = _hints(args_type)
    kwargs = dict(values)
    for name, value in values.items():
        nested = _dataclass_in(hints.get(name))
        if nested is not None and isinstance(value, Mapping):
            kwargs[name] = build_args(nested, value)
    field_names = {f.name for f in dataclasses.fields(args_type)}
    if "depends_on" in field_names and opts is not None and opts.depends_on is not None:
        deps = opts.depends_on
        kwargs["depends_on"] = list(deps) if isinstance(deps, (list, tuple)) else [deps]
    return args_type(**kwargs)


def hosted(component: type[pulumi.ComponentResource], args_type: type) -> type[pulumi.ComponentResource]:
    """The class the package hosts for ``component`` (see the module docstring)."""
    view = schema_view(args_type)

    def __init__(self: pulumi.ComponentResource, name: str, args: Any,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        component.__init__(self, name, build_args(args_type, args, opts), opts)  # type: ignore[misc]

    __init__.__annotations__ = {"name": str, "args": view, "opts": pulumi.ResourceOptions | None,
                                "return": None}
    hints = _hints(component)
    outputs = hints
    return type(component.__name__, (component, _PackageToken), {
        "__init__": __init__, "__annotations__": outputs, "__doc__": component.__doc__,
        "__module__": component.__module__, "__qualname__": component.__qualname__,
    })


COMPONENTS: list[type[pulumi.ComponentResource]] = [
    hosted(ModelStore, ModelStoreArgs),
    hosted(ContainerRegistry, ContainerRegistryArgs),
    hosted(KubernetesCluster, KubernetesClusterArgs),
    hosted(ModelImage, ModelImageArgs),
    hosted(ModelService, ModelServiceArgs),
]
"""The components the package hosts: the public ones of :mod:`components`."""
