"""Open an ONNX file so that ONNX Runtime maps its large weights from the file instead of copying them.

An ONNX file keeps each weight inline (``TensorProto.raw_data``). Given the file's path, ONNX
Runtime parses the whole protobuf (one copy of the weights) and then copies every weight into its
own tensors (a second copy), so loading a 1 GiB model peaks at over 2 GiB of anonymous memory and
keeps 1 GiB of it per process that loads.

ONNX Runtime *maps* weights that are stored as external data (``mmap``, read-only). This module
reads only the protobuf's framing (field headers and lengths, never the weight bytes) and writes a
small model in memory in which each large inline weight becomes an external-data reference to its
own bytes, at their offset, in the same verified file. The weights then live once, in the page
cache: read-only pages shared by the forked workers, by every container that runs the same image
layer on a node, and reclaimable by the kernel instead of counted towards an out-of-memory kill.
The file itself is not changed, so what was hashed and signed is what is served.

Standard library only. Protobuf wire format: https://protobuf.dev/programming-guides/encoding/;
ONNX fields: ``onnx/onnx.proto`` (ModelProto.graph = 7, GraphProto.initializer = 5,
TensorProto.raw_data = 9, external_data = 13, data_location = 14).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODEL_GRAPH = 7
GRAPH_INITIALIZER = 5
TENSOR_RAW_DATA = 9
TENSOR_EXTERNAL_DATA = 13
TENSOR_DATA_LOCATION = 14
EXTERNAL = 1
"""``TensorProto.DataLocation.EXTERNAL``."""
MIN_MAPPED_BYTES = 1024 * 1024
"""Weights at least this large are mapped; smaller ones stay inline (not worth a mapping each)."""


class WeightsError(ValueError):
    """The file is not a protobuf this module can read (truncated or not ONNX)."""


@dataclass(frozen=True)
class MappedModel:
    """A model ONNX Runtime can open from ``model`` (bytes) with its weights mapped from ``path``."""

    model: bytes
    """The model without its large weights' bytes: each is an external-data reference into ``path``."""
    mapped: int
    """Bytes of weights that ONNX Runtime will map from the file."""
    tensors: int
    """Number of weights mapped."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WeightsError(f"truncated or malformed varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, value start, value end) of each field in ``buf[start:end]``."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, value_end = _varint(buf, pos, end)
        elif wire == 1:
            value_end = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            value_end = pos + length
        elif wire == 5:
            value_end = pos + 4
        else:
            raise WeightsError(
                f"unsupported protobuf wire type {wire} (field {number}) at byte {field_start}")
        if value_end > end:
            raise WeightsError(
                f"field {number} at byte {field_start} runs past its message (truncated file?)")
        yield number, wire, field_start, pos, value_end
        pos = value_end


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _entry(key: str, value: str) -> bytes:
    """One ``StringStringEntryProto`` of ``TensorProto.external_data``."""
    return _field(TENSOR_EXTERNAL_DATA, _field(1, key.encode()) + _field(2, value.encode()))


def _tensor(buf, start: int, end: int, location: str, threshold: int) -> tuple[bytes, int] | None:
    """The tensor at ``buf[start:end]`` with its raw data made external, and its size; None to keep it."""
    raw = None
    for number, _, _, value_start, value_end in _fields(buf, start, end):
        if number == TENSOR_RAW_DATA:
            raw = (value_start, value_end)
        elif number in (TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION):
            return None  # already external: leave it as the file says
    if raw is None or raw[1] - raw[0] < threshold:
        return None
    kept = bytearray()
    for number, _, field_start, _, value_end in _fields(buf, start, end):
        if number != TENSOR_RAW_DATA:
            kept += buf[field_start:value_end]
    offset, length = raw[0], raw[1] - raw[0]
    kept += _entry("location", location) + _entry("offset", str(offset)) + _entry("length", str(length))
    kept += _encode_varint(TENSOR_DATA_LOCATION << 3 | 0) + _encode_varint(EXTERNAL)
    return bytes(kept), raw[1] - raw[0]


def map_weights(path: Path | str, threshold: int = MIN_MAPPED_BYTES) -> MappedModel:
    """Read ``path``'s framing and return the model with its weights of ``threshold`` bytes or more external.

    Open the result with :func:`session_config` (ONNX Runtime must know the file's directory).
    """
    path = Path(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        size = len(buf)
        out = bytearray()
        mapped = tensors = 0
        for number, wire, field_start, value_start, value_end in _fields(buf, 0, size):
            if number != MODEL_GRAPH or wire != 2:
                out += buf[field_start:value_end]
                continue
            graph = bytearray()
            for g_number, g_wire, g_start, g_value, g_end in _fields(buf, value_start, value_end):
                made = None
                if g_number == GRAPH_INITIALIZER and g_wire == 2:
                    made = _tensor(buf, g_value, g_end, path.name, threshold)
                if made is None:
                    graph += buf[g_start:g_end]
                else:
                    graph += _field(GRAPH_INITIALIZER, made[0])
                    mapped += made[1]
                    tensors += 1
            out += _field(MODEL_GRAPH, bytes(graph))
    return MappedModel(bytes(out), mapped, tensors)


def session_config(path: Path | str) -> dict[str, str]:
    """ONNX Runtime session config entries to open a :class:`MappedModel` of ``path`` from bytes.

    External data of a model opened from bytes is looked up in this folder; prepacking is off because
    it would copy each mapped weight into a packed buffer of the process's own (measured: the load
    peaks at two copies again and the steady state holds one anonymous copy per container).
    """
    return {
        "session.model_external_initializers_file_folder_path": str(Path(path).resolve().parent),
        "session.disable_prepacking": "1",
    }
