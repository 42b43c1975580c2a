"""`python app.py db copy`: a queue moves SQLite -> PostgreSQL -> SQLite with nothing lost."""

import json
from datetime import datetime

from sqlalchemy import MetaData, insert, select

from annotate.records import Draft, NewItem
from annotate.schema import AuditRow
from annotate.store import Store
from tests.conftest import ASTRONAUT, run_app
from tests.pg_server import pg_server  # noqa: F401  (session-scoped PostgreSQL server)


def fill(store: Store) -> None:
    """A queue with a bit of everything: an image file, history, undo, overlap reviews, audit."""
    store.enqueue(ASTRONAUT, Draft("demo", "v1", "an astronaut", confidence_mean=-0.7, confidence_min=-3.1))
    store.enqueue_many([NewItem(f"{i:064x}", "url", Draft("demo", "v1", f"draft {i}"), url=f"https://e.org/{i}.jpg")
                        for i in range(4)])
    store.enqueue_many([NewItem(f"{9:064x}", "url", Draft("demo", "v2", "two men"), url="https://e.org/9.jpg")],
                       overlap=2)
    item = store.claim_next("alice")
    version = store.submit_correction(item.id, "alice", "an astronaut in an orange suit", item.version,
                                      {"face": "smiling"}, tags=["missing_detail"])
    store.approve(item.id, "alice", expected_version=version)
    store.undo_last("alice")
    store.approve(item.id, "alice")
    store.reject(store.claim_next("bob").id, "bob", "not a person")
    for who in ("carol", "dave"):
        while (claimed := store.claim_next(who)) is not None and claimed.overlap == 1:
            store.skip(claimed.id, who)
        if claimed is not None:
            store.approve(claimed.id, who, expected_version=claimed.version)
    with store._durable.begin() as conn:
        conn.execute(insert(AuditRow.__table__), [{"at": datetime(2030, 1, 1), "actor": "root", "role": "admin",
                                                   "action": "reassign", "target": "item 2", "detail": None,
                                                   "allowed": False}])


def dump(url: str) -> dict:
    """Every row of every table (ids included), for exact comparison across databases."""
    with Store(url) as store:
        meta = MetaData()
        meta.reflect(store.engine)
        with store.engine.connect() as conn:
            ordered = {name: select(table).order_by(*table.primary_key.columns) for name, table in meta.tables.items()}
            return {name: [dict(row) for row in conn.execute(query).mappings()]
                    for name, query in ordered.items() if name != "alembic_version"}


def test_copy_to_postgresql_and_back(tmp_path, pg_server):
    sqlite_url, pg_url = f"sqlite:///{tmp_path / 'a.db'}", pg_server.fresh_database()
    with Store(sqlite_url, tmp_path / "data") as store:
        fill(store)
        stats_before = store.stats()
    before = dump(sqlite_url)
    assert before["reviews"] and before["audit_log"] and len(before["revisions"]) == 1

    forward = run_app("db", "copy", "--from", sqlite_url, "--to", pg_url, "--json")
    assert forward.returncode == 0, forward.stderr
    counts = json.loads(forward.stdout)["counts"]
    assert counts["items"] == 6 and counts["audit_log"] == 1 and counts["actions"] == len(before["actions"])
    assert dump(pg_url) == before

    again = run_app("db", "copy", "--from", sqlite_url, "--to", pg_url)  # never merges two queues
    assert again.returncode == 2 and "not empty" in again.stderr

    back_url = f"sqlite:///{tmp_path / 'b.db'}"
    back = run_app("db", "copy", "--from", pg_url, "--to", back_url, "--data-dir", str(tmp_path / "data"),
                   "--to-data-dir", str(tmp_path / "data2"))
    assert back.returncode == 0, back.stderr
    assert "1 image files copied" in back.stdout
    assert dump(back_url) == before
    with Store(back_url, tmp_path / "data2") as copied:
        assert copied.stats() == stats_before
        assert copied.get_item(1).image.path.read_bytes() == ASTRONAUT.read_bytes()
    with Store(pg_url, tmp_path / "data") as moved:  # the copy is a working queue: new ids follow on
        new_id = moved.enqueue_url("https://e.org/new.jpg", Draft("demo", "v1", "new"))
        assert new_id == 7
        assert moved.get_item(1).caption == "an astronaut in an orange suit"
