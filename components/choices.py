"""Choices with a fixed set of values, as ``str`` enums the components take typed.

Each enum lives with the component that uses it (``StorageSku`` in :mod:`components.store`, ...);
this module only turns a caller's plain string into the member, or refuses it naming the allowed
values, so a component takes ``NetworkPolicy.CILIUM`` and ``"cilium"`` alike.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)


def allowed(enum: type[StrEnum]) -> str:
    """The values of ``enum``, for a message naming what is allowed."""
    return ", ".join(m.value for m in enum)


def choice(enum: type[E], value: object, field: str, when: str = "") -> E:
    """``value`` as a member of ``enum``; a ValueError names ``field`` and the allowed values.

    ``when``: the condition under which the field is required, for the message ("when ... is set").
    """
    try:
        return enum(value)
    except ValueError:
        condition = f" {when}" if when else ""
        raise ValueError(f"{field} must be one of {allowed(enum)}{condition}, got {value!r}") from None
