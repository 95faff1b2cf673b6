"""The local side of a fetch: destination checks, staging, the atomic swap, and the sha256 cache.

A fetch stages the new model directory beside its destination (same filesystem), then swaps it into
place in one step. Fetches into one parent directory hold an advisory lock on it (``flock``, which
the kernel drops when a process dies, even by ``kill -9``), so whoever holds the lock knows that any
staging directory beside the destination is a dead fetch's leftover and removes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from modelship_contract.manifest import MANIFEST_FILE
from modelstore.errors import InvalidInput, ModelStoreError
from modelstore.transfer import IO_CHUNK

log = logging.getLogger(__name__)

STAGING_SUFFIX = ".staging"


def check_dest(dest: Path) -> None:
    """Refuse a destination that is not (yet) a model directory: never replace unrelated files."""
    try:
        if not dest.exists() and not dest.is_symlink():
            ancestor = dest.parent
            while not ancestor.exists() and ancestor != ancestor.parent:
                ancestor = ancestor.parent
            if not ancestor.is_dir():
                raise InvalidInput(
                    f"destination {dest} cannot be created: {ancestor} is a file, not a directory"
                )
            return
        if not dest.is_dir() or dest.is_symlink():
            raise InvalidInput(
                f"destination {dest} exists and is not a directory; pass a model directory path")
        entries = list(dest.iterdir())
        if entries and not (dest / MANIFEST_FILE).is_file():
            raise InvalidInput(
                f"destination {dest} is a non-empty directory without {MANIFEST_FILE}; refusing to replace "
                "it. Pass a new path, an empty directory or an existing model directory"
            )
    except OSError as exc:
        raise InvalidInput(f"destination {dest} cannot be used: {exc.strerror or exc}") from None


def check_cache_dir(cache_dir: Path | str | None) -> Path | None:
    """The cache's ``sha256`` directory, created if needed; None without a cache.

    A path that exists but is not a directory is bad input. A cache that cannot be created only
    costs the cache: the fetch goes on without it, with a warning.
    """
    if cache_dir is None:
        return None
    root = Path(cache_dir).absolute()
    keyed = root / "sha256"
    for path in (root, keyed):
        if path.exists() and not path.is_dir():
            raise InvalidInput(f"cache directory {path} is a file, not a directory: pass a directory "
                               "(--cache-dir or MODELSHIP_CACHE_DIR) or --no-cache")
    try:
        keyed.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("not using the cache %s: %s", root, exc.strerror or exc)
        return None
    return keyed


@contextlib.contextmanager
def _locked(directory: Path, waiting: str) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s", waiting)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _stale_entries(parent: Path, dest_name: str) -> list[Path]:
    prefix = f".{dest_name}."
    return [p for p in parent.iterdir()
            if p.name.startswith(prefix) and (p.name.endswith(STAGING_SUFFIX) or ".old-" in p.name)]


@contextlib.contextmanager
def staging_for(dest: Path) -> Iterator[Path]:
    """A fresh staging directory beside ``dest``, under the parent's lock; removed afterwards.

    Creates ``dest``'s missing parents first (and removes them again if the fetch fails), so an
    unwritable destination fails here, before any network call.
    """
    created: list[Path] = []
    with contextlib.ExitStack() as stack:
        try:
            for parent in reversed(dest.parents):
                if not parent.exists():
                    parent.mkdir()
                    created.append(parent)
            waiting = f"waiting for another fetch into {dest.parent} to finish"
            stack.enter_context(_locked(dest.parent, waiting))
            for stale in _stale_entries(dest.parent, dest.name):
                log.warning("removing %s, left by an interrupted fetch", stale)
                shutil.rmtree(stale, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=STAGING_SUFFIX, dir=dest.parent))
            stack.callback(shutil.rmtree, staging, ignore_errors=True)
            staging.chmod(0o755)  # mkdtemp's 0700 would become DEST's mode after the swap
        except OSError as exc:
            stack.close()
            _remove_dirs(created)
            raise InvalidInput(
                f"cannot write the destination {dest}: {exc.strerror or exc} "
                f"({exc.filename or dest.parent}); pass a path on a writable local filesystem"
            ) from None
        try:
            yield staging
        except OSError as exc:
            stack.close()
            _remove_dirs(created)
            raise ModelStoreError(
                f"cannot write the destination {dest}: {exc.strerror or exc} ({exc.filename or staging}); "
                "it was left unchanged"
            ) from None
        except BaseException:
            stack.close()
            _remove_dirs(created)
            raise


def _remove_dirs(created: list[Path]) -> None:
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


def copy_from_cache(cached: Path, target: Path, sha256: str, size: int) -> bool:
    """Copy a cached model file to ``target`` if it is intact; drop a corrupt cache entry."""
    try:
        if cached.stat().st_size != size:
            return False
    except OSError:
        return False
    if _stamp_matches(cached, sha256):
        # Verified before and untouched since (same inode, size and mtime): no re-hash. A hard
        # link costs no copy and no disk; across filesystems, a plain copy.
        try:
            os.link(cached, target)
        except OSError:
            shutil.copyfile(cached, target)
        return True
    digest = hashlib.sha256()
    with open(cached, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(IO_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    if digest.hexdigest() == sha256:
        _write_stamp(cached, sha256)
        return True
    log.warning("cached copy %s is corrupt; discarding it and downloading again", cached)
    with contextlib.suppress(OSError):
        cached.unlink()
    target.unlink()
    return False


def populate_cache(source: Path, cached: Path) -> None:
    """Copy a verified model file into the cache atomically; a failure only costs the cache.

    Writers hold the cache directory's lock, so a temporary file found under it is a dead
    writer's and is removed.
    """
    tmp = None
    try:
        with _locked(cached.parent, f"waiting for another fetch to finish writing the cache {cached.parent}"):
            for stale in cached.parent.glob(".*"):
                log.warning("removing %s, left by an interrupted fetch", stale)
                stale.unlink(missing_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{cached.name}.", dir=cached.parent)
            try:
                # A hard link on the same filesystem: no copy, and the fetched file and the cache
                # keep one inode and mtime, so a builder's incremental context sees it unchanged.
                os.close(fd)
                os.unlink(tmp)
                os.link(source, tmp)
            except OSError:
                with open(tmp, "wb") as dst, open(source, "rb") as src:
                    shutil.copyfileobj(src, dst, IO_CHUNK)
            os.replace(tmp, cached)
            _write_stamp(cached, cached.name)
    except OSError as exc:
        log.warning("could not add %s to the cache: %s", cached, exc.strerror or exc)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _stamp_path(cached: Path) -> Path:
    return cached.with_name(f"{cached.name}.verified")


def _file_id(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "device": st.st_dev}


def _write_stamp(cached: Path, sha256: str) -> None:
    """Record what was verified (file identity and sha256) beside a cached file: a later hit with
    the same identity needs no re-hash. A failure only costs the next hit a hash."""
    with contextlib.suppress(OSError):
        _stamp_path(cached).write_text(json.dumps({"sha256": sha256, **_file_id(cached)}))


def _stamp_matches(cached: Path, sha256: str) -> bool:
    """True when ``cached`` is the very file verified as ``sha256`` and was not written since."""
    try:
        stamp = json.loads(_stamp_path(cached).read_text())
        return stamp == {"sha256": sha256, **_file_id(cached)}
    except (OSError, ValueError):
        return False


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange() -> Callable[[Path, Path], bool] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]

    def exchange(a: Path, b: Path) -> bool:
        if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return True
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return False
        raise OSError(err, os.strerror(err), str(b))

    return exchange


_exchange = _renameat2_exchange()


def swap_into_place(staging: Path, dest: Path) -> None:
    """Make ``staging`` become ``dest``. Afterwards ``staging`` holds the old contents (or is gone)."""
    if not dest.exists():
        os.rename(staging, dest)
        return
    # Linux: swap both directories in one atomic step; readers never see dest missing.
    if _exchange is not None and _exchange(staging, dest):
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except OSError:
        os.rename(old, dest)
        raise
    os.rename(old, staging)
