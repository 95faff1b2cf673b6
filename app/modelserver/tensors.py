"""The manifest's datatypes as numpy dtypes, and shapes as messages show them. numpy only.

Both sides of the request path need these: ``protocol`` builds arrays of a wire datatype, and
``predictor`` checks arrays against the model's signature. Neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelship_contract.manifest import NUMPY_TYPES, Datatype

NUMPY_DTYPES: dict[Datatype, np.dtype] = {datatype: np.dtype(name) for datatype, name in NUMPY_TYPES.items()}
"""Wire datatype -> numpy dtype (BYTES has no fixed-size numpy equivalent and is not served)."""

DATATYPES: dict[np.dtype, Datatype] = {dtype: datatype for datatype, dtype in NUMPY_DTYPES.items()}
"""numpy dtype -> wire datatype."""


def datatype_name(dtype: np.dtype) -> str:
    """The wire name of a numpy dtype (``float32`` -> ``FP32``), else numpy's own name."""
    datatype = DATATYPES.get(dtype)
    return datatype.value if datatype is not None else str(dtype)


def shape_text(shape: Sequence[int]) -> str:
    """``[-1, 64]`` rendered for messages, with -1 shown as ``-1`` (any size)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def shape_matches(spec: Sequence[int], shape: Sequence[int]) -> bool:
    """Whether ``shape`` fits the declared ``spec``, where -1 stands for any size."""
    return len(spec) == len(shape) and all(s == -1 or s == d for s, d in zip(spec, shape, strict=True))
