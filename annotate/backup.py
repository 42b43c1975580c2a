"""Snapshots of the review queue that survive the machine: `backup` and `restore`.

A snapshot is one timestamped folder in a backup folder:

    BACKUP/20261130T061500.123456Z/
        studio.db       the queue, copied with SQLite's online backup API: one read
                        transaction, so it is exactly the database as of one commit, taken
                        while reviewers keep writing (WAL: readers never block the writer)
        images/...      the image files the queue gained since the previous snapshot
        images.txt      their paths (relative to the data folder), one per line
        manifest.json   written last: counts per status, schema version, sizes

It is built in a hidden `.tmp-*` folder and renamed into place, so a crash mid-backup never
leaves something that looks like a snapshot. `restore` puts the newest snapshot's database
and the images of every snapshot up to it into an empty data folder, then migrates the
database (an older snapshot upgrades cleanly). The data folder itself defaults to `/data` on
a machine with persistent storage (a Hugging Face Space with it), else `./data`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from annotate.atomic import fsync_file
from annotate.errors import QueueError

DB_NAME = "studio.db"
MANIFEST = "manifest.json"
IMAGES_LIST = "images.txt"
FORMAT = 1
PERSISTENT_DIR = Path("/data")  # a Space's persistent storage, when it has some


class BackupError(QueueError):
    """A backup or restore that cannot be done as asked."""


class QueueNotEmpty(BackupError):
    def __init__(self, target: Path, items: int):
        super().__init__(f"{target} already holds a review queue ({items} items); restore into an empty "
                         "data folder (--data-dir), or pass --force to replace it")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    name: str
    manifest: dict


# ---- where the data lives -------------------------------------------------------------------

def default_data_dir(persistent: Path = PERSISTENT_DIR) -> Path:
    """`/data` when it exists and is writable (persistent storage), else `./data`."""
    if persistent.is_dir() and os.access(persistent, os.W_OK | os.X_OK):
        return persistent
    return Path("data")


def point_hf_home(persistent: Path = PERSISTENT_DIR, environ=os.environ) -> str | None:
    """On persistent storage, keep downloaded weights there too (HF_HOME), unless HF_HOME is
    set or the weights were baked into the image (`preload_from_hub` fills the default cache,
    which HF_HOME would hide). Call before huggingface_hub is imported. Returns the new value."""
    if "HF_HOME" in environ or default_data_dir(persistent) != persistent:
        return None
    default_hub = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface" / "hub"
    if default_hub.is_dir() and any(default_hub.glob("models--*")):
        return None
    environ["HF_HOME"] = str(persistent / ".huggingface")
    return environ["HF_HOME"]


# ---- backup -----------------------------------------------------------------------------------

def sqlite_file(db_url: str) -> Path:
    """The database file behind a sqlite:/// URL; other databases have their own tools."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(f"backup and restore work on a SQLite queue file, not {url.get_backend_name()} "
                          "(use the server's own tools, e.g. pg_dump)")
    return Path(url.database)


def take_snapshot(db_url: str, data_dir: Path, backup_dir: Path, now: datetime | None = None) -> Snapshot:
    """Write one consistent snapshot of the queue (and its new images) into `backup_dir`.

    The work runs on a thread of its own at the lowest CPU priority: a backup is background
    work, and on a busy machine the reviewers' requests should get the CPU first.
    """
    outcome: dict = {}

    def work() -> None:
        _lower_priority()
        try:
            outcome["snapshot"] = _take_snapshot(db_url, Path(data_dir), Path(backup_dir), now)
        except BaseException as exc:  # re-raised on the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="backup", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["snapshot"]


def _lower_priority() -> None:
    """Nice 19 for the calling thread only (Linux schedules threads one by one); elsewhere the
    call fails or applies to the process, and the backup simply runs at normal priority."""
    if not hasattr(threading, "get_native_id") or not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:
        pass  # not permitted here: same backup, normal priority


def _take_snapshot(db_url: str, data_dir: Path, backup_dir: Path, now: datetime | None) -> Snapshot:
    source = sqlite_file(db_url)
    if not source.is_file():
        raise BackupError(f"there is no review queue at {source} to back up")
    backup_dir = Path(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    name = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")
    final = backup_dir / name
    if final.exists():
        raise BackupError(f"a snapshot named {name} already exists in {backup_dir}")
    tmp = backup_dir / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    try:
        started = datetime.now(timezone.utc)
        _copy_database(source, tmp / DB_NAME)
        facts = _read_snapshot(tmp / DB_NAME)
        added = sorted(set(facts.pop("image_paths")) - _backed_up_images(backup_dir))
        copied = _copy_images(Path(data_dir), tmp, added)
        manifest = {"format": FORMAT, "name": name, "started_at": started.isoformat(),
                    "finished_at": datetime.now(timezone.utc).isoformat(), **facts,
                    "images_added": len(copied), "database_bytes": (tmp / DB_NAME).stat().st_size}
        _write_durably(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot(final, name, manifest)


# Writing the copy: this many pages per step, each step's data flushed to disk before the next,
# so the copy never piles up hundreds of MB of dirty pages that would stall the reviewers'
# own fsyncs (synchronous=FULL) behind them.
COPY_STEP_PAGES = 4096  # 16 MB at SQLite's default 4 KB pages
COPY_PAUSE_S = 0.005  # between steps: lets the writers' commits through


def _copy_database(source: Path, target: Path) -> None:
    """Copy a live queue database consistently, gently for the writers.

    The online backup API copies in one read transaction when done in one step (writes by
    other connections between steps would restart it), so the consistent copy is taken in one
    step into memory, which costs no disk I/O, and then written out in small flushed steps
    (nothing modifies the in-memory copy, so those steps never restart). A database too large
    to hold in memory is copied straight to disk in one step instead.
    """
    src = sqlite3.connect(source, timeout=30)
    staged = sqlite3.connect(":memory:") if _fits_in_memory(source) else None
    dst = sqlite3.connect(target)
    try:
        dst.execute("PRAGMA journal_mode=OFF")  # a new file: nothing to roll back to
        dst.execute("PRAGMA synchronous=OFF")  # flushed below, and once more at the end
        if staged is None:
            src.backup(dst, pages=-1)
        else:
            src.backup(staged, pages=-1)  # the consistent snapshot: one step, one read transaction
            src.close()
            fd = os.open(target, os.O_RDONLY)
            try:
                staged.backup(dst, pages=COPY_STEP_PAGES, progress=lambda *_: _flush(fd))
            finally:
                os.close(fd)
        dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file: no -wal beside it
        dst.commit()
    except sqlite3.Error as exc:
        raise BackupError(f"could not copy the queue database {source}: {exc}") from exc
    finally:
        dst.close()
        if staged is not None:
            staged.close()
        src.close()
    fsync_file(target)


def _flush(fd: int) -> None:
    os.fdatasync(fd)
    time.sleep(COPY_PAUSE_S)


def _fits_in_memory(db: Path) -> bool:
    """The database (with its WAL) takes at most a quarter of the memory available now."""
    import psutil

    size = db.stat().st_size + (Path(f"{db}-wal").stat().st_size if Path(f"{db}-wal").exists() else 0)
    return size <= psutil.virtual_memory().available // 4


def _read_snapshot(db: Path) -> dict:
    conn = sqlite3.connect(db)
    try:
        # quick_check: the structural checks of integrity_check without cross-checking every
        # index entry (minutes of CPU on a large queue, taken from the reviewers).
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the snapshot failed SQLite's integrity check: {check}")
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        paths = [p for (p,) in conn.execute("SELECT path FROM images WHERE path IS NOT NULL")]
    except sqlite3.Error as exc:
        raise BackupError(f"the copied database is not a review queue: {exc}") from exc
    finally:
        conn.close()
    return {"schema_version": version, "items": sum(counts.values()), "counts": counts,
            "images": len(paths), "image_paths": paths}


def _backed_up_images(backup_dir: Path) -> set[str]:
    done: set[str] = set()
    for snapshot in list_snapshots(backup_dir):
        listing = snapshot.path / IMAGES_LIST
        if listing.is_file():
            done.update(line for line in listing.read_text().splitlines() if line)
    return done


def _copy_images(data_dir: Path, snapshot_dir: Path, paths: list[str]) -> list[str]:
    copied = []
    for relative in paths:
        source = data_dir / relative
        if not source.is_file():  # referenced but gone: the manifest's count says so
            continue
        target = snapshot_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append(relative)
    (snapshot_dir / IMAGES_LIST).write_text("".join(f"{p}\n" for p in copied))
    return copied


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


# ---- listing and restoring --------------------------------------------------------------------

def list_snapshots(backup_dir: Path) -> list[Snapshot]:
    """Complete snapshots in a backup folder, oldest first (names are UTC timestamps)."""
    found = []
    backup_dir = Path(backup_dir)
    if not backup_dir.is_dir():
        return found
    for entry in sorted(backup_dir.iterdir()):
        manifest = entry / MANIFEST
        if entry.name.startswith(".") or not manifest.is_file():
            continue
        found.append(Snapshot(entry, entry.name, json.loads(manifest.read_text())))
    return found


def queue_items(db_file: Path) -> int:
    """Items in the queue at `db_file` (0 when there is no file, or no queue in it yet)."""
    if not db_file.is_file():
        return 0
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError:  # no items table: a database that holds no queue yet
        return 0
    finally:
        conn.close()


@dataclass(frozen=True)
class RestoreResult:
    snapshot: str
    database: str
    items: int
    counts: dict
    images_copied: int
    images_missing: int
    schema_version: str

    def as_dict(self) -> dict:
        return asdict(self)


def restore(backup_dir: Path, db_url: str, data_dir: Path, force: bool = False,
            snapshot: str | None = None) -> RestoreResult:
    """Restore the newest snapshot in `backup_dir` (or the one named `snapshot`) into an empty
    data folder, or over a queue with `force` (stop the app that serves it first)."""
    snapshots = list_snapshots(backup_dir)
    if snapshot is not None:
        snapshots = [s for s in snapshots if s.name <= snapshot]
        if not snapshots or snapshots[-1].name != snapshot:
            raise BackupError(f"no snapshot named {snapshot} in {backup_dir}")
    if not snapshots:
        raise BackupError(f"no snapshot in {backup_dir} (a snapshot is a folder with {MANIFEST})")
    chosen = snapshots[-1]
    target = sqlite_file(db_url)
    present = queue_items(target)
    if present and not force:
        raise QueueNotEmpty(target.parent, present)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".restore-{os.getpid()}-{target.name}")
    shutil.copyfile(chosen.path / DB_NAME, staged)
    try:
        _read_snapshot(staged)  # integrity check before it replaces anything
        _migrate(staged)
        for suffix in ("-wal", "-shm", "-journal"):  # a stale log must never meet the new file
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    copied = sum(_merge_images(s.path, Path(data_dir)) for s in snapshots)
    facts = _read_snapshot(target)
    missing = sum(not (Path(data_dir) / p).is_file() for p in facts["image_paths"])
    return RestoreResult(chosen.name, str(target), facts["items"], facts["counts"], copied, missing,
                         facts["schema_version"])


def _migrate(db: Path) -> None:
    """Bring the snapshot's schema up to this version's, leaving one self-contained file."""
    from alembic.util import CommandError

    from annotate.db import open_database

    try:
        open_database(f"sqlite:///{db}").dispose()
    except CommandError as exc:  # e.g. a snapshot from a newer version of the app
        raise BackupError(f"cannot upgrade the snapshot's database: {exc}") from exc
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")  # folds any WAL into the file before it moves
    finally:
        conn.close()


def _merge_images(snapshot_dir: Path, data_dir: Path) -> int:
    listing = snapshot_dir / IMAGES_LIST
    copied = 0
    for relative in listing.read_text().splitlines() if listing.is_file() else []:
        source, target = snapshot_dir / relative, data_dir / relative
        if relative and source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied += 1
    return copied
