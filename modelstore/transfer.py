"""Moving a model's bytes: hashed block uploads, the SDK's concurrent download hashed in order, progress.

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

    def hook(self, current: int, total: int | None) -> None:
        """The SDK's ``progress_hook``: bytes done so far, reported from its worker threads."""
        if self._bar is not None:
            with self._lock:
                if current > self._bar.n:
                    self._bar.update(current - self._bar.n)

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


class InOrderHasher:
    """The file the SDK's concurrent download writes into, hashing its bytes in file order as they land.

    ``readinto`` seeks and writes whole ranges, one at a time, in whatever order they arrive. A range
    that lands where the hashed prefix ends is hashed from the buffer the SDK hands over; ranges
    that land early are hashed from the file (page cache) once the prefix reaches them. Nothing is
    held back, so memory stays at what the SDK itself buffers.
    """

    def __init__(self, fd: int):
        self._fd = fd
        self._pos = 0
        self._early: dict[int, int] = {}
        """Offset -> length of ranges written past the hashed prefix, not hashed yet."""
        self._digest = hashlib.sha256()
        self._lock = threading.Lock()
        self.hashed = 0
        """Length of the hashed prefix."""

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise OSError(f"seek whence {whence} is not supported")
        self._pos = offset
        return offset

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        if not len(view):
            return 0
        with self._lock:
            offset = self._pos
            done = 0
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], offset + done)
            self._pos += done
            if offset == self.hashed:
                self._digest.update(view)
                self.hashed += done
                while self.hashed in self._early:
                    self._hash_from_file(self.hashed, self._early.pop(self.hashed))
            elif offset > self.hashed:
                self._early[offset] = done
            else:  # a range written twice: the SDK never does it; refuse rather than hash it wrong
                raise IntegrityError(f"range at offset {offset} was written again")
            return done

    def _hash_from_file(self, offset: int, length: int) -> None:
        end = offset + length
        while offset < end:
            piece = os.pread(self._fd, min(IO_CHUNK, end - offset), offset)
            if not piece:
                raise IntegrityError(f"range at offset {offset} vanished from the file")
            self._digest.update(piece)
            offset += len(piece)
        self.hashed = end

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def download(blob: Any, size: int, etag: str, target: Path, *, concurrency: int, bar: Progress) -> str:
    """Download ``blob`` into ``target`` with the SDK's concurrent path; return the sha256 of the file.

    ``download_blob(max_concurrency=N).readinto(...)`` moves the bytes (its own range size is the
    client's ``max_chunk_get_size``), pinned to ``etag`` so a blob replaced mid-download fails
    instead of mixing. What the SDK lacks is added around it: the in-order hash (``InOrderHasher``),
    a size check, and an fsync before the caller swaps the file into place.
    """
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        writer = InOrderHasher(fd)
        downloader = blob.download_blob(
            etag=etag, match_condition=MatchConditions.IfNotModified, max_concurrency=concurrency,
            progress_hook=bar.hook,
        )
        written = downloader.readinto(writer)
        if written != size or writer.hashed != size:
            raise IntegrityError(f"short download: {writer.hashed} of {size} bytes arrived in order")
        os.fsync(fd)
    finally:
        os.close(fd)
    return writer.hexdigest()
