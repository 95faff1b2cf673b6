"""Resources a model server needs, derived from the model's size: memory and how long it may take to start.

One home for these figures: the stack's Deployment, the local container (``delivery.settings``) and
the benchmarks all ask here. Standard library only.

Memory (measured on this project's image, ``benchmarks/README.md`` "Large models"): the server
maps the model's weights from the verified file instead of copying them (``modelserver.weights``)
and forks its workers after the load, so the container holds the weights once, as shared file
pages, plus the runtime; loading holds no second copy. What grows under load is per request, and
is capped: each worker's ONNX Runtime arena holds at most ``REQUEST_MEMORY_MIB`` for one request's
intermediate tensors (a request that needs more gets 413, not an OOM kill), and decoding a JSON
body of at most 4 MiB (the server's ``MODELSHIP_MAX_BODY_BYTES``) peaks at ``BODY_MIB``. Hence

* request = model size + ``RUNTIME_MIB`` (what the pod holds while idle: scheduling);
* limit   = model size + ``RUNTIME_MIB`` + ``WORKERS`` x (``REQUEST_MEMORY_MIB`` + ``BODY_MIB``)
  (every worker busy with the largest request it may take);

each rounded up to 64 MiB and never below the figures that served the small demo model before
(256Mi / 512Mi). A configured value below the derived one is refused, naming the figure needed.

Start-up: the server hashes the model file (sha256) and loads it before it answers ready. The
budget allows ``STARTUP_BASE_S`` plus ``STARTUP_S_PER_GIB`` per GiB, several times what this
2-core VM needs (1 GiB: ~8 s), so that a slower or busier machine does not fail a correct model.
"""

from __future__ import annotations

import dataclasses
import math
import re

from modelship_contract import image

MIB = 1024 * 1024
GIB = 1024 * MIB
RUNTIME_MIB = 160
"""Python, ONNX Runtime and uvicorn in the server's three processes, idle (measured ~95 MiB), plus margin."""
WORKERS = image.WORKERS
"""Worker processes of the image: each may run one request at a time."""
REQUEST_MEMORY_MIB = image.REQUEST_MEMORY_MIB
"""Cap on one request's intermediate tensors per worker (the server's ``MODELSHIP_REQUEST_MEMORY_MIB``)."""
BODY_MIB = 72
"""Decoding the largest JSON body the server accepts (4 MiB): measured peak 17 x the body's size."""
MIN_REQUEST_MIB = 256
MIN_LIMIT_MIB = 512
ROUND_MIB = 64
STARTUP_BASE_S = 120
STARTUP_S_PER_GIB = 120
PROBE_PERIOD_S = 5
"""Period of the Kubernetes startup probe; its failure threshold is the budget divided by this."""

_QUANTITY_RE = re.compile(r"^([0-9]+)(Ki|Mi|Gi|k|m|g)$")
_UNITS = {"Ki": 1024, "Mi": MIB, "Gi": GIB, "k": 1024, "m": MIB, "g": GIB}


class SizingError(ValueError):
    """A configured resource is below what the model needs; the message names the key and the figure."""


def parse_memory(quantity: str) -> int:
    """Bytes in ``512Mi``/``1Gi`` (Kubernetes) or ``512m``/``1g`` (Docker; binary units too)."""
    m = _QUANTITY_RE.match(quantity.strip()) if isinstance(quantity, str) else None
    if not m:
        raise ValueError(f"memory quantity {quantity!r} is not one of <n>Ki, <n>Mi, <n>Gi, <n>k, <n>m, <n>g")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _round_up(mib: float) -> int:
    return int(math.ceil(mib / ROUND_MIB) * ROUND_MIB)


def human(size: int) -> str:
    """``1073741824`` -> ``1.0 GiB``; ``314572800`` -> ``300 MiB``."""
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size / MIB:.0f} MiB"


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one server container gets; every figure derived from the model unless configured."""

    model_size: int
    """Model file size in bytes (the manifest's ``size``)."""
    memory_request_mib: int
    memory_limit_mib: int
    startup_seconds: int
    """How long the server may take to answer ready after it starts (hash + load)."""

    @property
    def memory_request(self) -> str:
        """Kubernetes quantity, e.g. ``1280Mi``."""
        return f"{self.memory_request_mib}Mi"

    @property
    def memory_limit(self) -> str:
        return f"{self.memory_limit_mib}Mi"

    @property
    def docker_memory(self) -> str:
        """The limit in Docker's notation (``--memory``), e.g. ``1600m``."""
        return f"{self.memory_limit_mib}m"

    @property
    def startup_failure_threshold(self) -> int:
        """Failures of a ``PROBE_PERIOD_S`` startup probe that add up to the start-up budget."""
        return max(1, math.ceil(self.startup_seconds / PROBE_PERIOD_S))


PER_WORKER_MIB = REQUEST_MEMORY_MIB + BODY_MIB
LIMIT_OVERHEAD_MIB = RUNTIME_MIB + WORKERS * PER_WORKER_MIB
"""What the limit adds to the model: the runtime and every worker busy with its largest request."""


def needed_request_mib(model_size: int) -> int:
    return max(MIN_REQUEST_MIB, _round_up(model_size / MIB + RUNTIME_MIB))


def needed_limit_mib(model_size: int) -> int:
    return max(MIN_LIMIT_MIB, _round_up(model_size / MIB + LIMIT_OVERHEAD_MIB))


def limit_reason(model_size: int) -> str:
    """Why the limit is what it is, for error messages."""
    return (f"the model once ({human(model_size)}, mapped), {RUNTIME_MIB} MiB of runtime and {WORKERS} "
            f"workers x {PER_WORKER_MIB} MiB for a request each ({REQUEST_MEMORY_MIB} MiB of tensors "
            f"+ {BODY_MIB} MiB to decode the body)")


def startup_budget_s(model_size: int) -> int:
    return STARTUP_BASE_S + round(STARTUP_S_PER_GIB * model_size / GIB)


def for_model(
    model_size: int,
    *,
    model: str = "the model",
    memory_request: str | None = None,
    memory_limit: str | None = None,
    startup_seconds: int | None = None,
    keys: tuple[str, str, str] = ("memoryRequest", "memoryLimit", "startupSeconds"),
) -> Resources:
    """Derive what ``model_size`` bytes of model need; configured values must not be below it.

    ``keys`` name the settings in errors (config keys for the stack, environment variables locally).
    """
    if not isinstance(model_size, int) or model_size < 1:
        raise ValueError(f"model size must be a positive number of bytes, got {model_size!r}")
    need_request, need_limit = needed_request_mib(model_size), needed_limit_mib(model_size)
    what = f"{model} ({human(model_size)})"
    request = need_request
    if memory_request:
        request = math.ceil(parse_memory(memory_request) / MIB)
        if request < need_request:
            raise SizingError(
                f"{keys[0]} {memory_request} is too small for {what}: it holds about the model plus "
                f"{RUNTIME_MIB} MiB while serving, so use at least {need_request}Mi "
                "(or leave it empty to derive it)"
            )
    limit = need_limit
    if memory_limit:
        limit = math.ceil(parse_memory(memory_limit) / MIB)
        if limit < need_limit:
            raise SizingError(
                f"{keys[1]} {memory_limit} is too small for {what}: it needs "
                f"{limit_reason(model_size)}, so use at least {need_limit}Mi ({need_limit}m for Docker), "
                "or leave it empty to derive it"
            )
    if limit < request:
        raise SizingError(f"{keys[1]} ({limit}Mi) must be >= {keys[0]} ({request}Mi)")
    budget = startup_budget_s(model_size)
    if startup_seconds is not None:
        if startup_seconds < 1:
            raise SizingError(f"{keys[2]} must be a positive number of seconds, got {startup_seconds}")
        budget = startup_seconds
    return Resources(model_size, request, limit, budget)
