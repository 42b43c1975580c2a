"""The queue and export commands through `python app.py ...` subprocesses."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate.store import Store
from tests.conftest import ASTRONAUT, REPO, run_app

TURN = pa.struct([("from", pa.string()), ("value", pa.string())])


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def hq_file(tmp_path):
    rows = [[{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": f"Person {i}."}]
            for i in range(4)]
    rows[2] = [{"from": "human", "value": "<image>\nDescribe."}]  # malformed: no gpt turn
    table = pa.table({"url": [f"https://img.example.org/{i}.jpg" for i in range(4)],
                      "human_caption_hq": pa.array(rows, pa.list_(TURN))})
    pq.write_table(table, tmp_path / "hq.parquet")
    return tmp_path / "hq.parquet"


def test_import_stats_list_show_reassign(db, hq_file, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    result = run_app("queue", "import", str(hq_file), "--db", db, *data)
    assert result.returncode == 1, result.stderr  # done, but a row was left out (documented: 1)
    assert "4 rows read, 3 imported, 0 duplicates, 1 bad" in result.stdout
    assert "bad row 2: no gpt turn" in result.stdout
    again = run_app("queue", "--db", db, "import", "--json", str(hq_file), *data)  # --db before the action
    assert json.loads(again.stdout)["duplicates"] == 3

    stats = json.loads(run_app("queue", "stats", "--json", "--db", db, *data).stdout)
    assert stats["by_status"]["pending"] == 3 and stats["total"] == 3
    assert stats["by_model_version"][0]["model_name"] == "HumanCaption-HQ"

    with Store(db, tmp_path / "data") as store:
        item = store.claim_next("alice")
        store.reject(item.id, "alice", "not a person")
    listed = run_app("queue", "list", "--status", "rejected", "--json", "--db", db, *data)
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["id"], row["reject_reason"]) == (item.id, "not a person")
    shown = run_app("queue", "show", str(item.id), "--db", db, *data)
    assert "rejected: not a person" in shown.stdout and "reject by alice" in shown.stdout
    assert run_app("queue", "reassign", str(item.id), "--db", db, *data).returncode == 0
    text_stats = run_app("--help").stdout, run_app("queue", "stats", "--db", db, *data).stdout
    assert "queue" in text_stats[0] and "export" in text_stats[0]
    assert "pending 3" in text_stats[1] and "HumanCaption-HQ" in text_stats[1]


def test_export_command(db, hq_file, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    assert run_app("queue", "import", str(hq_file), "--db", db, *data).returncode == 1  # its bad row: 1 = partial
    with Store(db, tmp_path / "data") as store:
        while item := store.claim_next("bob"):
            store.approve(item.id, "bob")
    out = tmp_path / "export"
    result = run_app("export", "--format", "humancaptionhq", "--out", str(out), "--split", "0.5", "--db", db, *data)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["total"] == 3 and manifest["split"]["train_fraction"] == 0.5
    table = pa.concat_tables(pq.read_table(out / f) for f in manifest["files"] if f.endswith(".parquet"))
    assert sorted(table["item_id"].to_pylist()) == [1, 2, 3]
    llava = run_app("export", "--format", "llava", "--out", str(tmp_path / "llava"), "--json", "--db", db, *data)
    assert json.loads(llava.stdout)["skipped_without_image"] == 3  # URL-only: no image files to ship


def test_errors_exit_2_with_one_line(db, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    missing = run_app("queue", "show", "999", "--db", db, *data)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no item 999 in the review queue"
    bad_file = run_app("queue", "import", str(tmp_path / "nope.parquet"), "--db", db, *data)
    assert bad_file.returncode == 2 and bad_file.stderr.startswith("error: ") and "Traceback" not in bad_file.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    refused = run_app("export", "--out", str(tmp_path / "mine"), "--db", db, *data)
    assert refused.returncode == 2 and "not a previous export" in refused.stderr
    assert run_app("export", "--format", "csv", "--out", str(tmp_path / "x"), "--db", db).returncode == 2
    assert run_app("queue").returncode == 2  # an action is required


def test_a_database_url_that_cannot_be_opened_is_one_line(tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    cases = {"not-a-url": ("not a database URL",), "nosuchdb://x": ("unknown database type",),
             "postgresql://me:s3cret@127.0.0.1:1/q": ("driver is not installed", "refused"),  # no server on port 1
             f"sqlite:///{tmp_path / 'a-file'}/studio.db": ("cannot open",)}
    (tmp_path / "a-file").write_text("a file where a folder should be")
    for url, reasons in cases.items():
        result = run_app("queue", "stats", "--db", url, *data)
        assert result.returncode == 2 and any(r in result.stderr for r in reasons), result.stderr
        assert result.stderr.startswith("error: cannot open the database") and len(result.stderr.splitlines()) == 1
        assert "s3cret" not in result.stderr


def test_database_url_from_the_environment(tmp_path, hq_file):
    env = {"HUMANVLM_DB_URL": f"sqlite:///{tmp_path / 'env.db'}", "HUMANVLM_DATA_DIR": str(tmp_path / "envdata")}
    assert run_app("queue", "import", str(hq_file), env=env).returncode == 1  # the bad row
    assert (tmp_path / "env.db").is_file() and (tmp_path / "envdata").is_dir()
    assert json.loads(run_app("queue", "stats", "--json", env=env).stdout)["total"] == 3


def test_queue_add_captions_with_the_demo_model_and_resumes(db, tmp_path, demo_vlm):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(ASTRONAUT, folder / "astronaut.png")
    shutil.copy(REPO / "static" / "examples" / "camera.png", folder / "camera.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a real jpeg")
    args = ["queue", "add", str(folder), "--model", "demo", "--max-new-tokens", "8", "--batch-size", "2",
            "--preset", "face", "--db", db, "--data-dir", str(tmp_path / "data")]
    first = run_app(*args)
    assert first.returncode == 1  # one unreadable file is reported
    assert "2 queued, 0 already in the queue, 1 unreadable" in first.stdout
    assert "broken.jpg" in first.stderr and "3/3" in first.stderr  # progress bar
    second = run_app(*args)  # resumable: nothing is captioned twice
    assert "0 queued, 2 already in the queue" in second.stdout
    with Store(db, tmp_path / "data") as store:
        items = store.list_items()
        assert len(items) == 2
        for item in items:
            assert item.draft.model_name == demo_vlm.info.name and item.draft.model_version == demo_vlm.info.version
            assert item.draft.preset == "face" and item.draft.settings["max_new_tokens"] == 8
            assert item.draft.caption.strip()
