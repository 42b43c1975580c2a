"""Publishing a folder atomically: build it next to its destination, then swap it in.

A reader (or a crash) sees either the previous folder or the new one, never a mix: files are
written into a hidden temporary folder beside the destination (same filesystem, so rename is
atomic), fsynced, and swapped in with one rename (RENAME_EXCHANGE on Linux when the destination
exists). A crash midway leaves only the hidden temporary folder, removed by the next run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_RENAME_EXCHANGE = 2  # linux/fs.h


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def staged_folder(destination: Path, may_replace: callable) -> Iterator[Path]:
    """Yield an empty hidden folder; on success swap it in as `destination`.

    `may_replace(destination)` must say whether an existing destination may be replaced (so a
    folder that is not a previous export is never swapped away). On error the staged folder
    is removed and `destination` is untouched.
    """
    parent = destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _lock(parent / f".{destination.name}.lock"):
        for stale in parent.glob(f".{destination.name}.tmp-*"):  # left by a crashed run
            shutil.rmtree(stale, ignore_errors=True)
        if destination.exists() and not may_replace(destination):
            raise FileExistsError(destination)
        staged = parent / f".{destination.name}.tmp-{uuid.uuid4().hex[:8]}"
        staged.mkdir()
        try:
            yield staged
            fsync_dir(staged)
            _swap_in(staged, destination)
        finally:
            shutil.rmtree(staged, ignore_errors=True)  # after a swap it holds the old folder
        fsync_dir(parent)


def _swap_in(staged: Path, destination: Path) -> None:
    if not destination.exists():
        os.rename(staged, destination)
    elif not _exchange(staged, destination):
        # No atomic exchange here: move the old folder aside first. A crash between the two
        # renames leaves the old export intact under the hidden .old name.
        old = destination.parent / f".{destination.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(destination, old)
        os.rename(staged, destination)
        os.rename(old, staged)  # so the caller's cleanup removes it


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name, use_errno=True) if name else None
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BlockingIOError(f"another export to {path.name[1:-5]} is running") from exc
        yield
