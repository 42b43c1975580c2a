"""Backup and restore of the review queue on real SQLite files: snapshots taken while 8
threads add and approve items are consistent (integrity check, exactly a prefix of the
commits), restore to the same queue and images, and restore refuses to overwrite a queue."""

import io
import sqlite3
import threading
import time

import pytest
from PIL import Image

from annotate.backup import (BackupError, QueueNotEmpty, default_data_dir, list_snapshots, point_hf_home,
                             restore, take_snapshot)
from annotate.records import Draft
from annotate.store import Store

DRAFT = Draft("demo", "v1", "a person standing outside", preset="detailed", prompt="Describe the photo.",
              settings={"max_new_tokens": 64})


def photo(n: int) -> bytes:
    """A small PNG, different for every n (its pixels spell n)."""
    img = Image.new("RGB", (24, 24), (n % 251, (n // 251) % 251, 90))
    img.putpixel((0, 0), (n % 256, (n >> 8) % 256, (n >> 16) % 256))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def url_of(db) -> str:
    return f"sqlite:///{db}"


def rows(db, table: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


def test_snapshots_under_eight_writers_are_exact_prefixes_and_restore(tmp_path):
    data = tmp_path / "data"
    store = Store(url_of(data / "studio.db"), data)
    for n in range(20):
        store.enqueue(photo(n), DRAFT)
    adds, approvals, errors = [], [], []  # (item id, started, finished), appended after each commit
    stop = threading.Event()

    def writer(w: int):
        n = 0
        try:
            while not stop.is_set():
                n += 1
                started = time.monotonic()
                item_id = store.enqueue(photo(1000 + w * 100_000 + n), DRAFT)
                adds.append((item_id, started, time.monotonic()))
                item = store.claim_next(f"r{w}")
                if item is not None:
                    version = store.submit_correction(item.id, f"r{w}", f"caption {item.id} by r{w}", item.version)
                    started = time.monotonic()
                    store.approve(item.id, f"r{w}", version)
                    approvals.append((item.id, started, time.monotonic()))
        except Exception as exc:  # reported below: a failed writer fails the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    taken = []
    try:
        for _ in range(3):
            time.sleep(0.4)
            began = time.monotonic()
            snap = take_snapshot(store.url, data, tmp_path / "backups")
            taken.append((snap, began, time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(approvals) > 20 and taken[0][0].manifest["items"] < taken[-1][0].manifest["items"]  # real traffic
    live = data / "studio.db"
    final_actions, final_revisions = rows(live, "actions"), rows(live, "revisions")

    for snap, began, ended in taken:
        db = snap.path / "studio.db"
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [i for (i,) in conn.execute("SELECT id FROM items ORDER BY id")]
        approved = {i for (i,) in conn.execute("SELECT id FROM items WHERE status = 'approved'")}
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())
        conn.close()
        # Commits are serialized, so one commit's state is a prefix of the ids...
        assert ids == list(range(1, len(ids) + 1))
        last = ids[-1]
        # ...holding every commit finished before the backup began, none started after it ended.
        assert all(i <= last for i, _, done in adds if done < began)
        assert all(i > last for i, start, _ in adds if start > ended)
        assert {i for i, _, done in approvals if done < began} <= approved
        assert not approved & {i for i, start, _ in approvals if start > ended}
        # Append-only history: exactly the first rows of the final database, unchanged.
        for table, final in (("actions", final_actions), ("revisions", final_revisions)):
            got = rows(db, table)
            assert got == final[:len(got)], table
        assert snap.manifest["counts"] == counts and snap.manifest["items"] == len(ids)

        into = tmp_path / f"restored-{snap.name}"
        result = restore(tmp_path / "backups", url_of(into / "studio.db"), into, snapshot=snap.name)
        assert (result.items, result.counts, result.images_missing) == (len(ids), counts, 0)
        with Store(url_of(into / "studio.db"), into) as restored:
            assert {k: v for k, v in restored.counts().items() if v} == counts
            path = restored.get_item(last).image.path  # absolute, in the restored folder
            assert path.parent.parent.parent == into and path.read_bytes() == (data / path.relative_to(into)).read_bytes()

    # Each snapshot after the first carries only the images added since the one before.
    added = [set((s.path / "images.txt").read_text().split()) for s, _, _ in taken]
    assert all(not (a & b) for a, b in zip(added, added[1:]))
    assert sum(map(len, added)) == taken[-1][0].manifest["images"]
    store.close()


@pytest.fixture()
def queue(tmp_path):
    data = tmp_path / "src"
    with Store(url_of(data / "studio.db"), data) as store:
        for n in range(6):
            store.enqueue(photo(n), DRAFT)
        store.enqueue_url("https://example.org/p.jpg", DRAFT)
        item = store.claim_next("ann")
        store.approve(item.id, "ann", store.submit_correction(item.id, "ann", "a person, corrected", item.version))
        item = store.claim_next("ann")
        store.reject(item.id, "ann", "blurry")
        stats = store.stats()
    take_snapshot(url_of(data / "studio.db"), data, tmp_path / "backups")
    return data, stats


def test_restore_into_an_empty_folder_gives_the_same_queue_and_images(tmp_path, queue):
    source, stats = queue
    into = tmp_path / "fresh"
    result = restore(tmp_path / "backups", url_of(into / "studio.db"), into)
    assert result.images_copied == 6 and result.images_missing == 0
    with Store(url_of(into / "studio.db"), into) as restored:
        assert restored.stats() == stats
        paths = [item.image.path for item in restored.list_items(limit=100) if item.image.path]
        assert len(paths) == 6
        for path in paths:
            assert path.read_bytes() == (source / path.relative_to(into)).read_bytes()
    assert not list(into.glob("*-wal")) and not list(into.glob(".restore-*"))


def test_restore_over_a_queue_is_refused_unless_forced(tmp_path, queue):
    source, stats = queue
    with pytest.raises(QueueNotEmpty, match="--force"):
        restore(tmp_path / "backups", url_of(source / "studio.db"), source)
    other = tmp_path / "other"
    with Store(url_of(other / "studio.db"), other) as store:
        store.enqueue(photo(99), DRAFT)
    with pytest.raises(QueueNotEmpty, match="1 items"):
        restore(tmp_path / "backups", url_of(other / "studio.db"), other)
    restore(tmp_path / "backups", url_of(other / "studio.db"), other, force=True)
    with Store(url_of(other / "studio.db"), other) as store:
        assert store.stats() == stats
    empty = tmp_path / "empty"  # a queue database with no items yet is empty
    Store(url_of(empty / "studio.db"), empty).close()
    assert restore(tmp_path / "backups", url_of(empty / "studio.db"), empty).items == 7


def test_clear_errors(tmp_path, queue):
    with pytest.raises(BackupError, match="no snapshot"):
        restore(tmp_path / "nothing-here", url_of(tmp_path / "x" / "studio.db"), tmp_path / "x")
    with pytest.raises(BackupError, match="no review queue"):
        take_snapshot(url_of(tmp_path / "missing.db"), tmp_path, tmp_path / "b")
    with pytest.raises(BackupError, match="pg_dump"):
        take_snapshot("postgresql://u@localhost/q", tmp_path, tmp_path / "b")
    (tmp_path / "backups" / ".tmp-20990101T000000.000000Z-1").mkdir()  # a crashed backup
    assert len(list_snapshots(tmp_path / "backups")) == 1


def test_an_older_snapshot_upgrades_on_restore(tmp_path):
    from alembic import command
    from alembic.config import Config

    from annotate.db import MIGRATIONS, create_store_engine, write_engine

    old = tmp_path / "old"  # a queue as version 0002 of the schema left it (no training_jobs)
    engine = create_store_engine(url_of(old / "studio.db"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with write_engine(engine).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        now = "2026-11-01 12:00:00"
        connection.exec_driver_sql("INSERT INTO images (id, sha256, hash_kind, created_at) VALUES (1, ?, 'url', ?)",
                                   ("ab" * 32, now))
        connection.exec_driver_sql(
            "INSERT INTO items (id, image_id, status, version, model_name, model_version, settings_json,"
            " draft_caption, created_at, updated_at) VALUES (1, 1, 'pending', 1, 'demo', 'v1', '{}', 'a man', ?, ?)",
            (now, now))
    engine.dispose()
    take_snapshot(url_of(old / "studio.db"), old, tmp_path / "old-backups")
    assert list_snapshots(tmp_path / "old-backups")[0].manifest["schema_version"] == "0002"
    into = tmp_path / "upgraded"
    result = restore(tmp_path / "old-backups", url_of(into / "studio.db"), into)
    assert result.items == 1 and int(result.schema_version) > 2
    with Store(url_of(into / "studio.db"), into) as restored:
        assert restored.get_item(1).caption == "a man"
    conn = sqlite3.connect(into / "studio.db")
    assert conn.execute("SELECT COUNT(*) FROM training_jobs").fetchone() == (0,)
    conn.close()


def test_persistent_storage_is_the_default_data_folder_when_writable(tmp_path):
    assert str(default_data_dir(tmp_path / "absent")) == "data"
    persistent = tmp_path / "persist"
    persistent.mkdir()
    assert default_data_dir(persistent) == persistent
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert point_hf_home(persistent, env) == str(persistent / ".huggingface") == env["HF_HOME"]
    assert point_hf_home(persistent, {"HF_HOME": "/elsewhere"}) is None  # the user's choice wins
    preloaded = tmp_path / "cache2" / "huggingface" / "hub" / "models--OpenFace-CQUPT--Human_LLaVA"
    preloaded.mkdir(parents=True)  # weights baked into the image by preload_from_hub stay visible
    assert point_hf_home(persistent, {"XDG_CACHE_HOME": str(tmp_path / "cache2")}) is None


def test_the_command_line_backs_up_and_restores(tmp_path, queue):
    from tests.conftest import run_app

    source, _ = queue
    made = run_app("backup", "--to", str(tmp_path / "cli-backups"), "--data-dir", str(source))
    assert made.returncode == 0, made.stderr
    snapshot = made.stdout.strip()
    assert (tmp_path / "cli-backups" / snapshot.rsplit("/", 1)[-1] / "manifest.json").is_file()
    into = tmp_path / "cli-restored"
    done = run_app("restore", "--from", str(tmp_path / "cli-backups"), "--data-dir", str(into))
    assert done.returncode == 0, done.stderr
    assert "7 items" in done.stdout and "6 images" in done.stdout
    stats = [run_app("queue", "stats", "--json", "--data-dir", str(d)).stdout for d in (source, into)]
    assert stats[0] == stats[1] and '"total": 7' in stats[0]
    again = run_app("restore", "--from", str(tmp_path / "cli-backups"), "--data-dir", str(into))
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
