"""Review-queue operations on a real SQLite file and on a real PostgreSQL server: claims,
corrections, decisions, undo, leases, optimistic locking, 16 concurrent reviewers, migrations."""

import sqlite3
import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from PIL import Image
from rapidfuzz.distance import Levenshtein
from sqlalchemy import inspect

from annotate import errors
from alembic.script import ScriptDirectory

from annotate.db import MIGRATIONS, migrate
from annotate.records import Draft, NewItem
from annotate.schema import Base
from annotate.store import Store
from tests.conftest import ASTRONAUT

DRAFT = Draft("demo", "v1", "a person standing outside", preset="detailed", prompt="Describe the photo.",
              settings={"max_new_tokens": 64})


class Clock:
    """A clock the test moves by hand, for lease expiry."""

    def __init__(self):
        self.now = datetime(2030, 1, 1, 12, 0, 0)

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)




@pytest.fixture
def sqlite_store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'queue.db'}", tmp_path / "data") as opened:
        yield opened


def url_items(store, n, start=0):
    rows = [NewItem(f"{i:064x}", "url", Draft("demo", "v1", f"draft {i}"), url=f"https://example.org/{i}.jpg")
            for i in range(start, start + n)]
    return store.enqueue_many(rows)


def test_enqueue_stores_the_image_by_hash_and_refuses_duplicates(store):
    item_id = store.enqueue(ASTRONAUT, DRAFT, licence="public domain", consent="NASA photo")
    item = store.get_item(item_id)
    assert item.status == "pending" and item.version == 1
    assert item.image.path.is_file() and item.image.path.read_bytes() == ASTRONAUT.read_bytes()
    assert item.image.path.parent.name == item.image.sha256[:2]
    assert (item.image.width, item.image.height, item.image.licence) == (512, 512, "public domain")
    assert item.draft == DRAFT and item.caption == DRAFT.caption
    with pytest.raises(errors.DuplicateImage) as dup:
        store.enqueue(ASTRONAUT.read_bytes(), DRAFT)  # same bytes, given another way
    assert dup.value.item_id == item_id and "already in the review queue" in str(dup.value)
    pil_id = store.enqueue(Image.new("RGB", (32, 24), "red"), DRAFT)
    assert store.get_item(pil_id).image.path.suffix == ".png"
    assert store.counts()["pending"] == 2


def test_enqueue_url_and_bad_input(store):
    item_id = store.enqueue_url("https://example.org/p.jpg", DRAFT)
    assert store.get_item(item_id).image.url == "https://example.org/p.jpg"
    assert store.get_item(item_id).image.path is None
    with pytest.raises(errors.DuplicateImage):
        store.enqueue_url("https://example.org/p.jpg", DRAFT)
    with pytest.raises(errors.InvalidInput):
        store.enqueue_url("file:///etc/passwd", DRAFT)
    with pytest.raises(ValueError) as bad:  # model.images.ImageError: user-facing
        store.enqueue(b"not an image at all", DRAFT)
    assert bad.value.user_facing
    with pytest.raises(errors.ItemNotFound):
        store.get_item(12345)


def test_claim_correct_approve_records_history_and_edit_rate(store):
    item_id = store.enqueue(ASTRONAUT, DRAFT)
    item = store.claim_next("alice")
    assert (item.id, item.status, item.claimed_by) == (item_id, "in_review", "alice")
    fields = {"face": "smiling woman", "body": "orange flight suit", "action": "posing", "background": "flag"}
    version = store.submit_correction(item_id, "alice", "An astronaut in an orange suit", item.version, fields)
    version = store.submit_correction(item_id, "alice", "A smiling astronaut in an orange suit", version)
    store.approve(item_id, "alice", expected_version=version)
    done = store.get_item(item_id)
    assert done.status == "approved" and done.decided_by == "alice" and done.claimed_by is None
    assert done.caption == "A smiling astronaut in an orange suit"
    assert done.fields == fields  # kept from the first save (fields=None keeps them)
    assert [r.caption for r in done.history] == ["An astronaut in an orange suit", done.caption]
    assert [a.action for a in done.actions] == ["claim", "correct", "correct", "approve"]
    expected = Levenshtein.normalized_distance(DRAFT.caption, done.caption)
    assert done.edit_rate == pytest.approx(expected) and 0 < done.edit_rate < 1
    assert store.claim_next("alice") is None
    assert store.reviewer_counts("alice") == {"approved": 1, "rejected": 0, "skipped": 0, "corrections": 2,
                                              "in_review": 0, "mean_edit_rate": round(expected, 4)}


def test_reject_skip_release_reassign(store):
    url_items(store, 3)
    first = store.claim_next("alice")
    with pytest.raises(errors.InvalidInput):
        store.reject(first.id, "alice", "  ")
    store.reject(first.id, "alice", "not a person")
    assert store.get_item(first.id).reject_reason == "not a person"
    second = store.claim_next("alice")
    store.skip(second.id, "alice")
    third = store.claim_next("alice")
    with pytest.raises(errors.InvalidTransition):
        store.release(third.id, "bob")
    store.release(third.id, "alice")
    assert store.counts() == {"pending": 1, "in_review": 0, "approved": 0, "rejected": 1, "skipped": 1}
    with pytest.raises(errors.InvalidTransition):  # decided items are closed until reassigned
        store.approve(first.id, "alice")
    store.reassign(first.id)
    store.reassign(second.id)
    reopened = store.get_item(first.id)
    assert reopened.status == "pending" and reopened.reject_reason is None and reopened.decided_by is None
    assert store.counts()["pending"] == 3


def test_stale_save_is_a_conflict_never_an_overwrite(store):
    url_items(store, 1)
    item = store.claim_next("alice")
    store.submit_correction(item.id, "alice", "first tab's caption", item.version)
    with pytest.raises(errors.ConflictError) as conflict:
        store.submit_correction(item.id, "alice", "second tab's caption", item.version)
    assert "changed since you loaded it" in str(conflict.value)
    with pytest.raises(errors.ConflictError):
        store.approve(item.id, "alice", expected_version=item.version)
    assert store.get_item(item.id).caption == "first tab's caption"
    assert store.get_item(item.id).status == "in_review"


def test_lease_expiry_gives_abandoned_items_back(db_url, tmp_path):
    clock = Clock()
    with Store(db_url, tmp_path / "data", clock=clock) as store:
        url_items(store, 1)
        held = store.claim_next("alice", lease_seconds=60)
        assert store.claim_next("bob") is None  # alice's lease is live
        with pytest.raises(errors.ClaimedByOther):
            store.submit_correction(held.id, "bob", "bob's caption", held.version)
        assert store.claim_next("alice", lease_seconds=60).id == held.id  # own item: lease renewed
        clock.advance(61)
        taken = store.claim_next("bob")
        assert taken.id == held.id and taken.claimed_by == "bob"
        with pytest.raises(errors.ConflictError):  # alice's view is stale now
            store.submit_correction(held.id, "alice", "alice's late caption", held.version)
        version = store.submit_correction(taken.id, "bob", "bob's caption", taken.version)
        store.approve(taken.id, "bob", expected_version=version)
        assert store.get_item(held.id).caption == "bob's caption"


def test_undo_restores_the_state_before_each_action(store):
    url_items(store, 2)
    item = store.claim_next("alice")
    v = store.submit_correction(item.id, "alice", "first fix", item.version, {"face": "a face"})
    v = store.submit_correction(item.id, "alice", "second fix", v)
    store.approve(item.id, "alice", expected_version=v)

    back = store.undo_last("alice")  # undo the approval: the item is alice's again
    assert (back.status, back.claimed_by, back.caption, back.edit_rate) == ("in_review", "alice", "second fix", None)
    assert store.claim_next("alice").id == item.id  # re-claiming her own item does not block undo
    back = store.undo_last("alice")  # undo the second correction
    assert back.caption == "first fix" and back.fields == {"face": "a face"}
    back = store.undo_last("alice")  # undo the first correction: the draft again, fields gone
    assert back.caption == "draft 0" and back.fields == {}
    assert [r.kind for r in back.history] == ["correct", "correct", "undo", "undo"]  # nothing overwritten
    with pytest.raises(errors.NothingToUndo):
        store.undo_last("alice")  # claims are not undoable actions

    other = store.claim_next("carol")
    store.reject(other.id, "carol", "blurry")
    store.reassign(other.id)  # someone changed it since carol's action
    with pytest.raises(errors.ConflictError):
        store.undo_last("carol")


def test_sixteen_reviewers_at_once(db_url, tmp_path):
    """No item claimed twice, no correction lost, every item in exactly one final state."""
    url = db_url
    stores = [Store(url, tmp_path / "data"), Store(url, tmp_path / "data")]  # two engines, one file
    n_items = 400
    url_items(stores[0], n_items)
    claims, saved, failures = [], {}, []
    lock = threading.Lock()

    def review(index):
        store, name = stores[index % 2], f"reviewer{index}"
        try:
            while (item := store.claim_next(name)) is not None:
                caption = f"{name} wrote this for item {item.id}"
                version = store.submit_correction(item.id, name, caption, item.version)
                final = ("approved", "rejected", "skipped")[item.id % 3]
                if final == "approved":
                    store.approve(item.id, name, expected_version=version)
                elif final == "rejected":
                    store.reject(item.id, name, "wrong person", expected_version=version)
                else:
                    store.skip(item.id, name, expected_version=version)
                with lock:
                    claims.append(item.id)
                    saved[item.id] = (caption, final, name)
        except Exception as exc:  # surfaced by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=review, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert Counter(claims).most_common(1)[0][1] == 1 and len(claims) == n_items
    for item in stores[0].list_items(limit=n_items):
        caption, final, name = saved[item.id]
        assert (item.caption, item.status, item.decided_by) == (caption, final, name)
    counts = stores[1].counts()
    assert counts["pending"] == counts["in_review"] == 0
    assert counts["approved"] + counts["rejected"] + counts["skipped"] == n_items
    stats = stores[0].stats()
    assert sum(row["corrections"] for row in stats["by_reviewer"].values()) == n_items
    for store in stores:
        store.close()


def test_connections_use_wal_full_sync_and_begin_immediate(sqlite_store):
    store = sqlite_store
    url_items(store, 1)
    store.claim_next("alice")  # a claim commits with synchronous=NORMAL, then restores FULL
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert raw.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    other = sqlite3.connect(store.engine.url.database, timeout=0, isolation_level=None)
    with store._durable.begin():  # a write transaction holds the write lock from its first line
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free again once it committed
    other.execute("ROLLBACK")
    other.close()


def test_migrations_are_idempotent_and_match_the_models(db_url, tmp_path):
    url = db_url
    with Store(url, tmp_path / "data") as first:
        url_items(first, 3)
        migrate(first.engine)  # again, on an up-to-date database
        migrate(first.engine)
    with Store(url, tmp_path / "data") as second:  # a second open runs them once more
        assert second.counts()["pending"] == 3
        inspector = inspect(second.engine)
        with second.engine.connect() as conn:
            head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [head]
        for table in Base.metadata.sorted_tables:
            in_db = {column["name"] for column in inspector.get_columns(table.name)}
            assert in_db == set(table.columns.keys()), table.name
            db_indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
            assert {ix.name for ix in table.indexes} <= db_indexes


def test_stats_per_model_version(store):
    rows = [NewItem(f"{i:064x}", "url", Draft("demo", "v1" if i < 3 else "v2", "a man"),
                    url=f"https://example.org/{i}.jpg") for i in range(5)]
    store.enqueue_many(rows)
    for _ in range(4):
        item = store.claim_next("bob")
        if item.id == 2:
            store.reject(item.id, "bob", "bad")
        else:
            v = store.submit_correction(item.id, "bob", "a tall man", item.version)
            store.approve(item.id, "bob", v)
    stats = store.stats()
    v1, v2 = stats["by_model_version"]
    assert (v1["model_version"], v1["approved"], v1["rejected"], v1["approval_rate"]) == ("v1", 2, 1, 0.6667)
    assert (v2["approved"], v2["pending"], v2["approval_rate"]) == (1, 1, 1.0)
    assert v1["mean_edit_rate"] == round(Levenshtein.normalized_distance("a man", "a tall man"), 4)
    assert stats["by_status"]["approved"] == 3 and stats["total"] == 5
    assert stats["by_reviewer"]["bob"]["rejected"] == 1


def test_every_queue_error_is_user_facing():
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, Exception):
            assert cls.user_facing is True, name


def test_bulk_enqueue_counts_duplicates(store):
    assert url_items(store, 5).imported == 5
    again = url_items(store, 5, start=3)  # 3 and 4 are known already
    assert (again.imported, again.duplicates) == (3, 2)
    assert store.counts()["pending"] == 8
