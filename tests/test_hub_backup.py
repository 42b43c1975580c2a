"""Backups to a dataset repository, up to the folder handed to huggingface_hub: a snapshot is
staged only when the queue changed, the scheduler's filters upload whole snapshots only, the
restore at start-up downloads the right files and restores an empty queue (from a local
folder standing in for the repository), and leaves a queue with items alone."""

import argparse
import shutil

import pytest
from huggingface_hub.utils import filter_repo_objects

from annotate.backup import BackupError, list_snapshots, take_snapshot
from annotate.hub_backup import (ChangeWatch, HubBackupConfig, add_backup_arguments, download_patterns,
                                 restore_if_empty, snapshot_names, stage_snapshot, start_from_args)
from annotate.store import Store
from tests.test_backup import DRAFT, photo, url_of

try:  # the scheduler's own ignore list (.git, .cache...), added to ours
    from huggingface_hub._commit_scheduler import DEFAULT_IGNORE_PATTERNS
except ImportError:  # pragma: no cover
    from huggingface_hub.constants import DEFAULT_IGNORE_PATTERNS  # type: ignore


def config_for(tmp_path, name="src") -> HubBackupConfig:
    data = tmp_path / name
    return HubBackupConfig("me/studio-backups", url_of(data / "studio.db"), data, tmp_path / f"{name}-staging")


def test_a_snapshot_is_staged_only_when_the_queue_changed(tmp_path):
    config = config_for(tmp_path)
    store = Store(config.db_url, config.data_dir)
    watch = ChangeWatch(config.db_url)
    assert stage_snapshot(config, watch) is None  # an empty queue: nothing to keep yet
    first = store.enqueue(photo(1), DRAFT)
    assert stage_snapshot(config, watch).manifest["items"] == 1
    assert stage_snapshot(config, watch) is None  # unchanged since
    item = store.claim_next("ann")
    store.approve(item.id, "ann", store.submit_correction(first, "ann", "a man, corrected", item.version))
    again = stage_snapshot(config, watch)
    assert again.manifest["counts"] == {"approved": 1} and again.manifest["images_added"] == 0
    assert [s.name for s in list_snapshots(config.staging)] == sorted(s.name for s in list_snapshots(config.staging))
    watch.close()
    store.close()


def test_the_scheduler_uploads_whole_snapshots_never_one_being_written(tmp_path):
    config = config_for(tmp_path)
    with Store(config.db_url, config.data_dir) as store:
        store.enqueue(photo(1), DRAFT)
    done = take_snapshot(config.db_url, config.data_dir, config.staging)
    (config.staging / ".tmp-20991231T000000.000000Z-7" / "images").mkdir(parents=True)  # in progress
    (config.staging / ".tmp-20991231T000000.000000Z-7" / "studio.db").write_bytes(b"half")
    files = [p.relative_to(config.staging).as_posix() for p in sorted(config.staging.glob("**/*")) if p.is_file()]
    uploaded = list(filter_repo_objects(files, ignore_patterns=[".tmp-*", ".tmp-*/**", *DEFAULT_IGNORE_PATTERNS]))
    assert uploaded and all(path.startswith(done.name + "/") for path in uploaded)
    assert {f"{done.name}/manifest.json", f"{done.name}/studio.db", f"{done.name}/images.txt"} <= set(uploaded)


def test_restore_at_start_downloads_the_newest_database_and_every_image(tmp_path):
    config = config_for(tmp_path)
    store = Store(config.db_url, config.data_dir)
    store.enqueue(photo(1), DRAFT)
    take_snapshot(config.db_url, config.data_dir, config.staging)
    store.enqueue(photo(2), DRAFT)
    take_snapshot(config.db_url, config.data_dir, config.staging)
    stats = store.stats()
    store.close()
    repo_files = [p.relative_to(config.staging).as_posix() for p in config.staging.glob("**/*") if p.is_file()]
    names = snapshot_names(repo_files + ["README.md", ".gitattributes"])
    assert names == [s.name for s in list_snapshots(config.staging)] and len(names) == 2
    wanted = set(filter_repo_objects(repo_files, allow_patterns=download_patterns(names[-1])))
    assert f"{names[0]}/studio.db" not in wanted and f"{names[-1]}/studio.db" in wanted
    assert {p for p in repo_files if "/images/" in p} <= wanted and len([p for p in wanted if "/images/" in p]) == 2

    def fetch(staging):  # the repository, as snapshot_download would lay it out
        for path in wanted:
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(config.staging / path, staging / path)
        return True

    fresh = config_for(tmp_path, "restarted")
    restored = restore_if_empty(fresh, fetch)
    assert restored.items == 2 and restored.images_missing == 0
    with Store(fresh.db_url, fresh.data_dir) as store:
        assert store.stats() == stats
        assert store.enqueue(photo(3), DRAFT) == 3  # and the queue goes on
    assert restore_if_empty(fresh, lambda staging: pytest.fail("a queue with items is never replaced")) is None
    nothing = config_for(tmp_path, "new-space")
    assert restore_if_empty(nothing, lambda staging: False) is None  # an empty repository: start empty


def test_serve_options(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    add_backup_arguments(parser)
    monkeypatch.delenv("HUMANVLM_BACKUP_REPO", raising=False)
    assert start_from_args(parser.parse_args([])) is None
    args = parser.parse_args(["--backup-repo", "me/b", "--backup-every", "0"])
    with pytest.raises(BackupError, match="positive"):
        start_from_args(args)
    monkeypatch.setenv("HUMANVLM_BACKUP_REPO", "me/from-env")
    parser = argparse.ArgumentParser()
    add_backup_arguments(parser)
    assert parser.parse_args([]).backup_repo == "me/from-env"


def test_serve_refuses_to_start_when_the_backup_repository_cannot_be_read(tmp_path):
    """Starting with an empty queue while the backups are out of reach would later push an
    empty snapshot over the real ones: serve stops with one line instead."""
    from tests.conftest import run_app

    done = run_app("serve", "--model", "demo", "--backup-repo", "me/studio-backups", "--data-dir", str(tmp_path),
                   "--port", "0", env={"HF_HUB_OFFLINE": "1", "HF_TOKEN": ""})
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot back up to the dataset repository me/studio-backups")
