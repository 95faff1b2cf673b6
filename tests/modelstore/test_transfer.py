"""The in-order hash of the SDK's concurrent download: ranges land in any order, the digest is the file's."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from modelstore.errors import IntegrityError
from modelstore.transfer import InOrderHasher

RANGE = 64 * 1024


def write_ranges(path: Path, data: bytes, order: list[int], first: int = 0) -> InOrderHasher:
    """Write ``data`` the way ``readinto`` does: a first part at 0, then ranges seek + write."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        writer = InOrderHasher(fd)
        writer.seek(writer.tell())
        writer.write(data[:first])
        start = writer.tell()
        for offset in order:
            writer.seek(start + offset)
            writer.write(data[start + offset: start + offset + RANGE])
    finally:
        os.close(fd)
    return writer


@pytest.mark.parametrize("seed", range(5))
def test_ranges_in_any_order_hash_to_the_files_sha256(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)  # deterministic orders; the property holds for every order
    first = rng.choice([0, RANGE // 2, 3 * RANGE])
    data = rng.randbytes(first + 37 * RANGE - 1000)  # a short last range
    order = list(range(0, len(data) - first, RANGE))
    rng.shuffle(order)

    writer = write_ranges(tmp_path / "model", data, order, first)

    assert (tmp_path / "model").read_bytes() == data
    assert writer.hashed == len(data)
    assert writer.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_missing_range_leaves_the_hashed_prefix_short(tmp_path: Path) -> None:
    data = bytes(range(256)) * (4 * RANGE // 256)
    writer = write_ranges(tmp_path / "model", data, [RANGE * 3, 0, RANGE * 2])  # RANGE * 1 never arrives
    assert writer.hashed == RANGE


def test_a_range_written_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="written again"):
        write_ranges(tmp_path / "model", b"x" * 2 * RANGE, [0, 0])
