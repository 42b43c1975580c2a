"""Backups to a (private) Hugging Face dataset repository, for a Space whose disk does not last.

`serve --backup-repo OWNER/NAME` (or $HUMANVLM_BACKUP_REPO) starts a `huggingface_hub`
`CommitScheduler` on a local staging folder: every `--backup-every` minutes, and once more at
exit, it takes a snapshot (annotate.backup) when the queue changed since the last one, then
commits the folder's new files, so each snapshot lands in the repository in one commit, as the
same timestamped folder `backup` writes. At start-up, when the local queue is empty and the
repository holds a snapshot, the newest one is downloaded and restored first. Needs a token
that may write to the repository ($HF_TOKEN, a Space secret). The hub calls are kept to
`CommitScheduler`, `list_repo_files` and `snapshot_download`; everything before them works on
local folders and is what the tests check.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from annotate.backup import IMAGES_LIST, MANIFEST, BackupError, RestoreResult, queue_items, restore, sqlite_file, \
    take_snapshot

log = logging.getLogger(__name__)

BACKUP_REPO_ENV = "HUMANVLM_BACKUP_REPO"
DEFAULT_EVERY_MINUTES = 10.0


@dataclass
class HubBackupConfig:
    repo: str  # OWNER/NAME of a dataset repository (created private when missing)
    db_url: str
    data_dir: Path
    staging: Path  # local folder the snapshots are written to and pushed from
    every_minutes: float = DEFAULT_EVERY_MINUTES
    token: str | None = None  # default: $HF_TOKEN / the cached login


def add_backup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backup-repo", metavar="OWNER/NAME", default=os.environ.get(BACKUP_REPO_ENV),
                        help=f"push snapshots of the queue to this private dataset repository (or ${BACKUP_REPO_ENV}); "
                             "at start, an empty queue is restored from its newest snapshot. Needs $HF_TOKEN")
    parser.add_argument("--backup-every", metavar="MINUTES", type=float, default=DEFAULT_EVERY_MINUTES,
                        help=f"minutes between snapshots pushed to --backup-repo (default {DEFAULT_EVERY_MINUTES:g})")
    parser.add_argument("--backup-dir", metavar="DIR", help="local staging folder for those snapshots "
                                                            "(default DATA_DIR/backups)")


# ---- local part: what is handed to huggingface_hub, and what comes back ------------------------

class ChangeWatch:
    """Tells whether the queue's database changed since the last call (SQLite's data_version
    on one long-lived connection: it moves when another connection commits)."""

    def __init__(self, db_url: str):
        self._conn = sqlite3.connect(sqlite_file(db_url), check_same_thread=False, timeout=30)
        self._seen: int | None = None

    def changed(self) -> bool:
        (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        first_or_moved = self._seen is None or version != self._seen
        self._seen = version
        return first_or_moved

    def close(self) -> None:
        self._conn.close()


def stage_snapshot(config: HubBackupConfig, watch: ChangeWatch):
    """Before each push: a new snapshot in the staging folder when the queue changed, else None
    (nor while it is still empty: the app may be creating it right now)."""
    if not queue_items(sqlite_file(config.db_url)) or not watch.changed():
        return None
    snapshot = take_snapshot(config.db_url, config.data_dir, config.staging)
    log.info("backup snapshot %s (%d items) staged for %s", snapshot.name, snapshot.manifest["items"], config.repo)
    return snapshot


def snapshot_names(repo_files: list[str]) -> list[str]:
    """Snapshot folders in a repository's file list, oldest first."""
    return sorted({path.split("/")[0] for path in repo_files
                   if path.count("/") == 1 and path.endswith("/" + MANIFEST)})


def download_patterns(newest: str) -> list[str]:
    """Files a restore needs: the newest snapshot whole, the images (and lists) of all."""
    return [f"{newest}/*", f"*/{MANIFEST}", f"*/{IMAGES_LIST}", "*/images/**"]


def restore_if_empty(config: HubBackupConfig, fetch) -> RestoreResult | None:
    """Restore the newest snapshot when the local queue is empty. `fetch(staging)` brings the
    snapshots into the staging folder and returns False when there are none."""
    if queue_items(sqlite_file(config.db_url)):
        return None
    if not fetch(config.staging):
        return None
    result = restore(config.staging, config.db_url, config.data_dir)
    log.info("restored %s from %s: %d items", result.snapshot, config.repo, result.items)
    return result


# ---- the hub calls ----------------------------------------------------------------------------

def fetch_from_hub(config: HubBackupConfig):
    def fetch(staging: Path) -> bool:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            names = snapshot_names(HfApi(token=config.token).list_repo_files(config.repo, repo_type="dataset"))
        except RepositoryNotFoundError:
            return False  # created on the first push
        if not names:
            return False
        snapshot_download(config.repo, repo_type="dataset", local_dir=staging, token=config.token,
                          allow_patterns=download_patterns(names[-1]))
        return True

    return fetch


def start_hub_backups(config: HubBackupConfig):
    """Restore an empty queue from the repository, then push snapshots on a schedule."""
    from huggingface_hub import CommitScheduler

    restore_if_empty(config, fetch_from_hub(config))
    watch = ChangeWatch(config.db_url)

    class SnapshotScheduler(CommitScheduler):
        def push_to_hub(self):
            with self.lock:  # never list the folder while a snapshot is being written into it
                stage_snapshot(config, watch)
            return super().push_to_hub()

    return SnapshotScheduler(repo_id=config.repo, repo_type="dataset", folder_path=config.staging, private=True,
                             every=config.every_minutes, token=config.token, ignore_patterns=[".tmp-*", ".tmp-*/**"])


def start_from_args(args):
    """For `serve`, before it opens the queue: restore an empty queue from --backup-repo and
    return the running scheduler; None without --backup-repo (or with --no-store)."""
    if not getattr(args, "backup_repo", None) or getattr(args, "no_store", False):
        return None
    if args.backup_every <= 0:
        raise BackupError("--backup-every takes a positive number of minutes")
    from annotate.db import resolve_data_dir, resolve_url

    data_dir = resolve_data_dir(getattr(args, "data_dir", None))
    db_url = resolve_url(getattr(args, "db", None), data_dir)
    staging = Path(args.backup_dir) if args.backup_dir else Path(data_dir) / "backups"
    config = HubBackupConfig(args.backup_repo, db_url, Path(data_dir), staging, args.backup_every,
                             os.environ.get("HF_TOKEN"))
    try:
        return start_hub_backups(config)
    except BackupError:
        raise
    except Exception as exc:  # the hub unreachable, a bad token, no write access: one clear line
        raise BackupError(f"cannot back up to the dataset repository {config.repo}: {type(exc).__name__}: {exc}") \
            from exc
