"""The model store: publish, list and fetch versioned model directories on Azure Blob Storage."""

from modelstore.errors import (
    AccessDenied,
    AlreadyExists,
    Busy,
    IntegrityError,
    InvalidInput,
    ModelStoreError,
    NotFound,
)
from modelstore.fetch import FetchResult
from modelstore.store import ModelStore, VersionInfo, parse_ref

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "Busy",
    "FetchResult",
    "IntegrityError",
    "InvalidInput",
    "ModelStore",
    "ModelStoreError",
    "NotFound",
    "VersionInfo",
    "parse_ref",
]
