"""Moving a model's bytes: hashed block uploads, concurrent ranged downloads, progress bars.

Both directions hash exactly the bytes that travel, so the store can say "these stored bytes match
the manifest" from what it sent or received, never from metadata an earlier attempt left behind.
Memory stays at about ``concurrency x block size`` whatever the model's size.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobBlock

from modelstore.errors import IntegrityError

MiB = 1024 * 1024
PROGRESS_THRESHOLD = 16 * MiB
"""Transfers at least this large show a progress bar (on a TTY, unless quiet)."""
IO_CHUNK = 1 * MiB


class Progress:
    """A tqdm bar on stderr for large transfers; a no-op otherwise."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = None
        if enabled and total >= PROGRESS_THRESHOLD and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, leave=False)
        self._lock = threading.Lock()

    def update(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def upload_blocks(
    blob: Any, path: Path, *, block_size: int, concurrency: int, bar: Progress,
    on_block: Callable[[], None] = lambda: None,
) -> tuple[list[BlobBlock], str, int]:
    """Stage ``path`` as uncommitted blocks of ``blob``; return the block list, sha256 and size.

    Staged blocks are invisible until a commit names them, so the caller commits only once the
    returned digest matches the manifest: a file that changed mid-upload never becomes a blob.
    Block ids are unique to this attempt, so a concurrent or crashed attempt's blocks never mix in.
    """
    attempt = uuid.uuid4().hex[:12]
    digest = hashlib.sha256()
    blocks: list[BlobBlock] = []
    size = 0
    with open(path, "rb") as fh, ThreadPoolExecutor(concurrency, thread_name_prefix="upload") as pool:
        pending: deque[Future[None]] = deque()

        def stage(block_id: str, data: bytes) -> None:
            on_block()
            blob.stage_block(block_id, data, length=len(data))
            bar.update(len(data))

        try:
            while data := fh.read(block_size):
                digest.update(data)
                size += len(data)
                block_id = base64.b64encode(f"{attempt}-{len(blocks):08d}".encode()).decode()
                blocks.append(BlobBlock(block_id=block_id))
                pending.append(pool.submit(stage, block_id, data))
                while len(pending) >= concurrency:  # at most `concurrency` blocks in memory
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
    return blocks, digest.hexdigest(), size


class OffsetWriter:
    """A write-only, non-seekable stream that writes at a fixed file offset onwards (``pwrite``)."""

    def __init__(self, fd: int, offset: int):
        self._fd = fd
        self._offset = offset
        self.written = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self._offset + self.written + done)
        self.written += done
        return done

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def download_ranges(
    blob: Any, size: int, etag: str, target: Path, *, chunk: int, concurrency: int, bar: Progress,
    on_range: Callable[[], None] = lambda: None,
) -> str:
    """Download ``size`` bytes in concurrent ranges into ``target`` and return their sha256.

    Every range is pinned to ``etag``, so a blob replaced mid-download fails instead of mixing.
    Workers write ranges at their offsets; this thread hashes the file in order as the prefix of
    completed ranges grows, so hashing overlaps the transfer.
    """
    done: dict[int, int] = {}
    state = {"contiguous": 0}
    cond = threading.Condition()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        def fetch_range(offset: int) -> None:
            on_range()
            length = min(chunk, size - offset)
            # readinto() hands the response body straight to the writer: one buffer per worker.
            writer = OffsetWriter(fd, offset)
            blob.download_blob(
                offset=offset, length=length, etag=etag,
                match_condition=MatchConditions.IfNotModified, max_concurrency=1,
            ).readinto(writer)
            if writer.written != length:
                raise IntegrityError(f"short read at offset {offset}: {writer.written} of {length} bytes")
            bar.update(length)
            with cond:
                done[offset] = length
                while state["contiguous"] in done:
                    state["contiguous"] += done.pop(state["contiguous"])
                cond.notify_all()

        digest = hashlib.sha256()
        hashed = 0
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch") as pool:
            futures = [pool.submit(fetch_range, off) for off in range(0, size, chunk)]
            for f in futures:
                f.add_done_callback(lambda _f: _notify(cond))
            try:
                with open(target, "rb", buffering=0) as reader:
                    while hashed < size:
                        with cond:
                            while state["contiguous"] <= hashed and not any(
                                f.done() and f.exception() for f in futures
                            ):
                                cond.wait(timeout=1.0)
                            ready = state["contiguous"]
                        failed = [f for f in futures if f.done() and f.exception()]
                        if failed:
                            raise failed[0].exception()  # type: ignore[misc]
                        while hashed < ready:
                            piece = os.pread(reader.fileno(), min(IO_CHUNK, ready - hashed), hashed)
                            digest.update(piece)
                            hashed += len(piece)
            finally:
                for f in futures:
                    f.cancel()
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _notify(cond: threading.Condition) -> None:
    with cond:
        cond.notify_all()
