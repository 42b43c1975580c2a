"""Team review on SQLite and PostgreSQL: overlap N, agreement, medoid, adjudication, gold
items, reason tags and claim order."""

import threading
from collections import Counter, defaultdict

import pytest

from annotate import errors
from annotate.agreement import changed_spans, medoid, token_f1
from annotate.records import Draft, NewItem
from annotate.store import Store




def rows(n, start=0, caption="a man in a red shirt", confidence=None):
    return [NewItem(f"{i:064x}", "url", Draft("demo", "v1", f"{caption} {i}", confidence_mean=None if confidence is None
                                              else confidence[i - start]), url=f"https://example.org/{i}.jpg")
            for i in range(start, start + n)]


def review(store, who, caption=None, verdict="approve", tags=None):
    item = store.claim_next(who)
    version = item.version
    if caption is not None:
        version = store.submit_correction(item.id, who, caption, version, tags=tags)
    if verdict == "approve":
        store.approve(item.id, who, expected_version=version)
    else:
        store.reject(item.id, who, "not a person", expected_version=version)
    return item


def test_token_f1_and_medoid():
    assert token_f1("A woman in red", "a woman wearing red") == pytest.approx(0.75)
    assert token_f1("", "") == 1.0 and token_f1("a", "b") == 0.0
    assert medoid(["a man in red", "a man in a red coat", "two dogs"]) == 0
    assert changed_spans("a man in a red shirt", "a tall man in a blue shirt") == 2


def test_overlap_needs_n_distinct_reviewers(store):
    store.enqueue_many(rows(1), overlap=3)
    first = store.claim_next("alice")
    assert first.status == "in_review" and first.overlap == 3
    assert store.claim_next("alice").id == first.id  # her own live claim, not a second review
    second, third = store.claim_next("bob"), store.claim_next("carol")
    assert first.id == second.id == third.id
    assert store.claim_next("dave") is None  # three slots, all held
    for who, item, caption in (("alice", first, "a man in a blue shirt"), ("bob", second, "a man in a blue top"),
                               ("carol", third, "a dog on a beach")):
        version = store.submit_correction(item.id, who, caption, item.version)
        assert store.get_item(item.id, reviewer=who).caption == caption  # each sees only their own
        store.approve(item.id, who, expected_version=version)
        assert store.claim_next(who) is None  # never the same item twice
    done = store.get_item(first.id)
    assert done.status == "approved" and done.caption == "a man in a blue shirt"
    assert done.final_source == "medoid:alice"  # closest to the other two
    assert [r.reviewer for r in store.reviews(first.id)] == ["alice", "bob", "carol"]
    assert store.counts()["approved"] == 1


def test_majority_rejection_and_reviewer_versions_do_not_collide(store):
    store.enqueue_many(rows(2), overlap=3)
    a, b = store.claim_next("alice"), store.claim_next("bob")
    store.submit_correction(a.id, "alice", "alice's caption", a.version)  # bob's version is untouched
    store.reject(b.id, "bob", "not a person", expected_version=b.version)
    with pytest.raises(errors.ConflictError):
        store.approve(a.id, "alice", expected_version=a.version)  # her own stale version
    store.reject(a.id, "alice", "blurry")
    review(store, "carol")
    item = store.get_item(a.id)
    assert item.status == "rejected" and item.reject_reason in ("not a person", "blurry")


def test_undo_and_release_of_an_independent_review(store):
    store.enqueue_many(rows(1), overlap=2)
    item = store.claim_next("alice")
    version = store.submit_correction(item.id, "alice", "first try", item.version)
    store.approve(item.id, "alice", expected_version=version)
    back = store.undo_last("alice")
    assert (back.id, back.status, back.caption) == (item.id, "in_review", "first try")
    store.release(item.id, "alice")
    assert store.claim_next("bob").id == item.id and store.claim_next("alice").id == item.id
    for who in ("alice", "bob"):
        store.approve(item.id, who)
    with pytest.raises(errors.ConflictError, match="all its reviews are in"):
        store.undo_last("bob")  # the item was decided by both reviews: an admin reassigns it
    store.reassign(item.id)  # reviewed afresh: earlier reviews are archived, anyone may review again
    assert store.get_item(item.id).status == "pending" and store.claim_next("alice").id == item.id


def test_eight_reviewers_with_overlap_two_never_collide(db_url, tmp_path):
    n_items, overlap = 60, 2
    with Store(db_url, tmp_path / "data") as store:
        store.enqueue_many(rows(n_items), overlap=overlap)
        done, failures, lock = defaultdict(list), [], threading.Lock()

        def work(who):
            try:
                while (item := store.claim_next(who)) is not None:
                    version = store.submit_correction(item.id, who, f"{who} on {item.id}", item.version)
                    store.approve(item.id, who, expected_version=version)
                    with lock:
                        done[item.id].append(who)
            except Exception as exc:  # surfaced below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(f"r{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(done) == n_items
        assert all(len(who) == overlap and len(set(who)) == overlap for who in done.values())
        assert store.counts()["approved"] == n_items
        stats = store.stats()
        assert stats["agreement"]["items"] == n_items and 0 <= stats["agreement"]["overall"] < 1


def test_disagreements_and_adjudication(store):
    store.enqueue_many(rows(2), overlap=2)
    for who in ("alice", "bob"):  # item 1: agree
        review(store, who, "a man in a red shirt smiling")
    first = store.claim_next("alice")  # item 2: disagree
    store.approve(first.id, "alice", expected_version=store.submit_correction(
        first.id, "alice", "a woman with a hat", first.version))
    second = store.claim_next("bob")
    store.approve(second.id, "bob", expected_version=store.submit_correction(
        second.id, "bob", "two children playing football", second.version))
    (found,) = store.disagreements(threshold=0.5)
    assert found.item.id == first.id and found.agreement == 0.0
    assert {r.caption for r in found.reviews} == {"a woman with a hat", "two children playing football"}
    store.adjudicate(first.id, "admin", pick="bob")
    item = store.get_item(first.id)
    assert (item.caption, item.final_source, item.status) == ("two children playing football", "pick:bob", "approved")
    assert item.history[-1].kind == "adjudicate" and item.history[-1].reviewer == "admin"
    assert store.disagreements(threshold=0.5) == []  # adjudicated items leave the list
    store.adjudicate(first.id, "admin", caption="a woman and two children")
    assert store.get_item(first.id).final_source == "merge"
    with pytest.raises(errors.InvalidInput):
        store.adjudicate(first.id, "admin", pick="nobody")
    agreement = store.stats()["agreement"]
    assert agreement["by_item"][first.id] == 0.0 and agreement["by_item"][first.id - 1] == 1.0
    assert agreement["overall"] == 0.5 and agreement["by_reviewer"] == {"alice": 0.5, "bob": 0.5}
    assert store.reviewer_agreement("alice")["agreement"] == 0.5


def test_gold_items_are_mixed_in_scored_and_never_finish(db_url, tmp_path):
    with Store(db_url, tmp_path / "data", gold_rate=1.0, seed=0) as store:
        store.enqueue_many(rows(1, caption="a woman in a blue coat"), gold=True)
        store.enqueue_many(rows(2, start=1))
        gold = store.claim_next("alice")  # rate 1: the gold item first
        assert gold.caption == "a woman in a blue coat 0"
        store.approve(gold.id, "alice", expected_version=store.submit_correction(
            gold.id, "alice", "a woman in a red coat 0", gold.version))
        other = store.claim_next("bob")
        assert other.id == gold.id
        store.approve(other.id, "bob", expected_version=other.version)  # left as it was: perfect
        assert store.claim_next("alice").id != gold.id  # each reviewer once
        scores = store.gold_scores()
        assert scores["items"] == 1
        assert scores["by_reviewer"]["bob"] == {"reviews": 1, "mean_score": 1.0}
        assert scores["by_reviewer"]["alice"]["mean_score"] == pytest.approx(round(token_f1(
            "a woman in a red coat 0", "a woman in a blue coat 0"), 4))
        assert store.get_item(gold.id).status == "pending"  # never approved, so never exported
        assert store.stats()["gold"]["by_reviewer"]["bob"]["reviews"] == 1


def test_reason_tags_are_counted_per_model_version(store):
    store.enqueue_many(rows(2))
    review(store, "alice", "a tall man in a blue shirt 0", tags=["wrong_attribute", "missing_detail"])
    item = store.claim_next("alice")
    store.approve(item.id, "alice", expected_version=item.version, tags=["other"])
    (entry,) = store.stats()["tags"]
    assert entry["tags"]["wrong_attribute"] == {"corrections": 1, "spans": 2}
    assert entry["tags"]["missing_detail"] == {"corrections": 1, "spans": 2}
    assert entry["tags"]["other"] == {"corrections": 1, "spans": 0}
    assert store.get_item(1).tags == ("wrong_attribute", "missing_detail")
    with pytest.raises(errors.InvalidInput):
        store.submit_correction(item.id, "alice", "x", 1, tags=["typo"])


def test_claim_orders(db_url, tmp_path):
    confidence = [-0.2, -1.5, None, -0.9]
    with Store(db_url, tmp_path / "data", order="confidence") as store:
        store.enqueue_many(rows(4, confidence=confidence))
        order = [store.claim_next(f"r{i}").id for i in range(4)]
        assert order == [2, 4, 1, 3]  # least confident first, unknown confidence last
        assert store.get_item(2).draft.confidence_mean == -1.5
    with Store(db_url, tmp_path / "data") as fifo:
        fifo.enqueue_many(rows(2, start=10))
        assert fifo.claim_next("s1").id == 5
        assert fifo.claim_next("s2", order="random").id == 6
        with pytest.raises(errors.InvalidInput):
            fifo.claim_next("s3", order="newest")
    counts = Counter(claimed for claimed in order)
    assert max(counts.values()) == 1


def test_reviewer_counts_include_independent_reviews(store):
    store.enqueue_many(rows(1), overlap=2)
    store.enqueue_many(rows(1, start=1))
    review(store, "alice", "a man in a blue shirt 0")
    held = store.claim_next("bob")
    assert store.reviewer_counts("bob")["in_review"] == 1
    store.approve(held.id, "bob", expected_version=held.version)  # the overlap item's second review
    review(store, "bob", verdict="reject")
    assert store.reviewer_counts("alice") == {"approved": 1, "rejected": 0, "skipped": 0, "corrections": 1,
                                              "in_review": 0, "mean_edit_rate": round(
                                                  store.reviews(1)[0].edit_rate, 4)}
    bob = store.reviewer_counts("bob")
    assert (bob["approved"], bob["rejected"], bob["corrections"], bob["mean_edit_rate"]) == (1, 1, 0, 0.0)


def test_upgrade_from_0003_keeps_items_as_single_review(db_url, tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from annotate.db import MIGRATIONS, create_store_engine, write_engine

    engine = create_store_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with write_engine(engine).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        conn.execute(text("INSERT INTO images (id, sha256, hash_kind, source_url, created_at) "
                          "VALUES (1, 'abc', 'url', 'https://e.org/1.jpg', '2030-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO items (id, image_id, status, version, model_name, model_version, settings_json, "
                          "draft_caption, created_at, updated_at) VALUES (1, 1, 'pending', 1, 'demo', 'v1', '{}', "
                          "'an old draft', '2030-01-01 00:00:00', '2030-01-01 00:00:00')"))
    engine.dispose()
    with Store(db_url, tmp_path / "data") as store:  # opening runs 0004
        item = store.claim_next("alice")
        assert (item.id, item.overlap, item.caption, item.draft.confidence_mean) == (1, 1, "an old draft", None)
        store.approve(item.id, "alice", expected_version=item.version)
        assert store.get_item(1).status == "approved"
