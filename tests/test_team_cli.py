"""Team review through the command line and the model: `queue import --overlap/--gold`,
`queue stats` with agreement, gold items left out of exports, and draft confidence from
`generate` scores (`queue add --overlap`)."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate.batch import caption_into_queue
from annotate.store import Store
from model.generate import GenerationSettings
from model.prompts import PRESETS
from tests.conftest import ASTRONAUT, REPO, run_app

TURN = pa.struct([("from", pa.string()), ("value", pa.string())])


def hq_file(path, captions, offset=0):
    rows = [[{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": c}] for c in captions]
    table = pa.table({"url": [f"https://img.example.org/{offset + i}.jpg" for i in range(len(captions))],
                      "human_caption_hq": pa.array(rows, pa.list_(TURN))})
    pq.write_table(table, path)
    return path


def test_import_overlap_and_gold_then_stats_and_export(tmp_path):
    db, data = f"sqlite:///{tmp_path / 'q.db'}", ["--data-dir", str(tmp_path / "data")]
    work = hq_file(tmp_path / "work.parquet", ["a man in a red shirt", "a woman with a dog"])
    gold = hq_file(tmp_path / "gold.parquet", ["a child on a bike"], offset=10)
    assert run_app("queue", "import", str(work), "--overlap", "2", "--db", db, *data).returncode == 0
    assert run_app("queue", "import", str(gold), "--gold", "--db", db, *data).returncode == 0
    with Store(db, tmp_path / "data", gold_rate=1.0, seed=1) as store:
        for who, text in (("alice", "a man in a blue shirt"), ("bob", "a man in a red shirt")):
            for _ in range(3):  # the gold item first, then the two overlap items
                item = store.claim_next(who)
                version = store.submit_correction(item.id, who, text, item.version, tags=["wrong_attribute"])
                store.approve(item.id, who, expected_version=version)
        assert store.claim_next("alice") is None
    stats = json.loads(run_app("queue", "stats", "--json", "--db", db, *data).stdout)
    assert stats["agreement"]["items"] == 2 and stats["agreement"]["by_reviewer"]["alice"] == pytest.approx(0.8333)
    assert stats["gold"]["items"] == 1 and set(stats["gold"]["by_reviewer"]) == {"alice", "bob"}
    (tags,) = stats["tags"]  # gold reviews say nothing about the model: not counted
    assert tags["tags"]["wrong_attribute"]["corrections"] == 4
    assert stats["by_status"] == {"pending": 1, "in_review": 0, "approved": 2, "rejected": 0, "skipped": 0}
    text = run_app("queue", "stats", "--db", db, *data).stdout
    assert "agreement (token F1) 0.833 over 2 items" in text and "gold: 1 items" in text
    exported = run_app("export", "--out", str(tmp_path / "export"), "--status", "pending", "--json", "--db", db, *data)
    assert json.loads(exported.stdout)["counts"] == {"train": 0, "test": 0}  # the pending gold item: never exported
    refused = run_app("queue", "import", str(work), "--overlap", "0", "--db", db, *data)
    assert refused.returncode == 2 and "overlap" in refused.stderr


def reference_confidence(vlm, paths, settings):
    """The same figures from transformers' own `compute_transition_scores` over `output_scores`."""
    import torch

    from model.images import load_image

    inputs = vlm._inputs([load_image(p.read_bytes()) for p in paths], [vlm.prompt_text([(PRESETS["brief"], None)])] * 2)
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, **vlm._gen_kwargs(settings), output_scores=True, return_dict_in_generate=True)
    logprobs = vlm.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    tokens = out.sequences[:, inputs["input_ids"].shape[1]:]
    ignore = torch.tensor(sorted({*vlm.stop_ids, vlm.processor.tokenizer.pad_token_id} - {None}))
    result = []
    for row, ids in zip(logprobs.float(), tokens):
        kept = row[~torch.isin(ids, ignore)]
        result.append((round(kept.mean().item(), 4), round(kept.min().item(), 4)))
    return result


def test_queue_add_records_the_models_confidence(tmp_path, demo_vlm):
    settings = GenerationSettings(max_new_tokens=8)
    images = [ASTRONAUT, REPO / "static" / "examples" / "camera.png"]
    from model.images import load_image

    plain = demo_vlm.caption_batch([load_image(p.read_bytes()) for p in images], PRESETS["brief"], settings)
    scored = demo_vlm.caption_batch_scored([load_image(p.read_bytes()) for p in images], PRESETS["brief"], settings)
    assert [text for text, _, _ in scored] == plain  # the same greedy captions, no second pass
    for _, mean, low in scored:
        assert low <= mean <= 0
    assert [(mean, low) for _, mean, low in scored] == reference_confidence(demo_vlm, images, settings)
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in images:
        shutil.copy(path, folder / path.name)
    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data", order="confidence") as store:
        result = caption_into_queue(store, demo_vlm, sorted(folder.iterdir()), PRESETS["brief"], "brief", settings,
                                    overlap=2)
        assert len(result.queued) == 2
        items = [store.get_item(i) for i in result.queued]
        assert all(item.overlap == 2 and item.draft.confidence_mean is not None for item in items)
        least = min(items, key=lambda item: item.draft.confidence_mean)
        assert store.claim_next("alice").id == least.id  # least confident first


def test_disagreements_and_adjudicate_commands(tmp_path):
    from annotate.records import Draft, NewItem

    db, data = f"sqlite:///{tmp_path / 'q.db'}", ["--data-dir", str(tmp_path / "data")]
    with Store(db, tmp_path / "data") as store:
        store.enqueue_many([NewItem("a" * 64, "url", Draft("demo", "v1", "a person"), url="https://e.org/a.jpg")],
                           overlap=2)
        for who, text in (("alice", "a woman with a hat"), ("bob", "two children playing football")):
            item = store.claim_next(who)
            store.approve(item.id, who, expected_version=store.submit_correction(item.id, who, text, item.version))
    listed = run_app("queue", "disagreements", "--json", "--db", db, *data)
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["agreement"] == 0.0 and row["final_source"] == "medoid:alice" and len(row["reviews"]) == 2
    settled = run_app("queue", "adjudicate", str(row["item_id"]), "--pick", "bob", "--by", "carol", "--db", db, *data)
    assert settled.returncode == 0 and "final caption from pick:bob: two children playing football" in settled.stdout
    assert run_app("queue", "disagreements", "--db", db, *data).stdout == ""
    wrong = run_app("queue", "adjudicate", str(row["item_id"]), "--pick", "nobody", "--db", db, *data)
    assert wrong.returncode == 2 and "nobody has no approved caption" in wrong.stderr


def test_serve_options_choose_the_claim_order_and_gold_rate(tmp_path, monkeypatch):
    from annotate.cli import open_store
    from app.cli import build_parser

    args = build_parser().parse_args(["serve", "--order", "confidence", "--gold-rate", "0.2",
                                      "--db", f"sqlite:///{tmp_path / 'q.db'}", "--data-dir", str(tmp_path)])
    with open_store(args) as store:
        assert (store.order, store.gold_rate) == ("confidence", 0.2)
    assert build_parser().parse_args(["serve"]).order == "fifo"
    assert run_app("serve", "--order", "newest").returncode == 2  # argparse: not a choice


def test_a_caption_sent_from_the_caption_tab_keeps_the_sessions_confidence(tmp_path, demo_vlm):
    from annotate.drafts import draft_from_session

    session = {"turns": [("Describe the photo.", "a person")], "preset": "brief", "confidence": (-0.8, -2.5)}
    draft = draft_from_session(demo_vlm, session)
    assert (draft.confidence_mean, draft.confidence_min) == (-0.8, -2.5)
    assert draft_from_session(demo_vlm, {"turns": session["turns"]}).confidence_mean is None
