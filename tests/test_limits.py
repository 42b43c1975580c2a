"""Abuse limits, each enforced where it belongs: the upload route, the handlers, the import,
the training collator."""

import dataclasses
import json
import time

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import ASTRONAUT, running_app
from tests.train_support import approve_shapes, export_to

LONG_CAPTION = ("A woman in an orange suit smiles at the camera. " * 420)[:20_000]


@pytest.fixture()
def app_url():
    from model.loader import LoadConfig
    from model.slot import ModelSlot

    slot = ModelSlot(LoadConfig(model="demo"))
    with running_app(slot=slot) as url:
        yield url, slot


def test_a_40_mib_upload_is_refused_by_the_upload_route(app_url):
    url, _ = app_url
    big = b"\0" * (40 * 1024 * 1024)
    r = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=120)
    assert r.status_code == 413
    small = httpx.post(f"{url}gradio_api/upload", files={"files": ("a.png", ASTRONAUT.read_bytes(), "image/png")},
                       timeout=60)
    assert small.status_code == 200


def test_a_160000_character_prompt_is_refused_before_the_model_runs(app_url):
    url, slot = app_url
    c = Client(url, verbose=False)
    started = time.perf_counter()
    with pytest.raises(AppError, match="160,000 characters; the limit is 2,000"):
        c.predict(handle_file(str(ASTRONAUT)), "detailed", "x" * 160_000, api_name="/caption")
    with pytest.raises(AppError, match="(?i)the message is 160,000 characters"):
        c.predict(handle_file(str(ASTRONAUT)), "y" * 160_000, api_name="/chat")
    elapsed = time.perf_counter() - started
    assert not slot.loaded  # refused before the model was loaded, let alone run
    print(f"two 160,000-character requests refused in {elapsed:.2f} s")


def test_history_turns_and_new_tokens_are_bounded(app_url):
    url, slot = app_url
    c = Client(url, verbose=False)
    with pytest.raises(AppError, match="(?i)the message is 2,001 characters"):
        c.predict(handle_file(str(ASTRONAUT)), "hi", [["z" * 2001, "ok"]], api_name="/chat")
    answer = c.predict(handle_file(str(ASTRONAUT)), "And her hair?",
                       [{"role": "user", "content": "Describe her."}, {"role": "assistant", "content": "A woman."}],
                       10_000_000, api_name="/chat")
    assert isinstance(answer, str)  # max_new_tokens 10,000,000 was capped, not honoured


def test_an_over_long_caption_is_skipped_at_import(tmp_path):
    from annotate.importers import import_file
    from annotate.store import Store

    (tmp_path / "a.png").write_bytes(ASTRONAUT.read_bytes())
    (tmp_path / "b.png").write_bytes((ASTRONAUT.parent / "camera.png").read_bytes())
    rows = [{"id": "a", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nDescribe."},
                                                            {"from": "gpt", "value": LONG_CAPTION}]},
            {"id": "b", "image": "b.png", "conversations": [{"from": "human", "value": "<image>\nDescribe."},
                                                            {"from": "gpt", "value": "A man with a camera."}]}]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        result = import_file(store, tmp_path / "data.json")
        assert (result.imported, result.bad) == (1, 1)
        assert "20,000 characters; the limit is 5,000" in result.bad_reasons[0]
        assert [i.caption for i in store.list_items()] == ["A man with a camera."]


def test_an_over_long_caption_cannot_run_a_training_out_of_memory(tmp_path):
    """Captions from elsewhere (an export edited by hand) are truncated to --max-length tokens."""
    from annotate.store import Store
    from model.loader import LoadConfig, load_model
    from train.data import ExportData, to_dataset
    from train.options import TrainOptions, resolve
    from train.progress import StatusWriter
    from train.trainer import build_trainer, prepare_model
    from tests.synthetic_shapes import QUESTION

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        approve_shapes(store, 4, seed=5)
        export = export_to(store, tmp_path / "llava", "llava", split=1.0)
    vlm = load_model(LoadConfig(model="demo"))
    example = ExportData(export).split("train")[0]
    examples = [dataclasses.replace(example, answer=LONG_CAPTION)]
    options = TrainOptions(data=str(export), base="demo", out="unused", method="full", max_steps=1)
    resolved = resolve(options, is_demo=True)
    model, peft_config = prepare_model(vlm.model, resolved)
    dataset = to_dataset(examples, vlm, QUESTION)
    trainer = build_trainer(model, peft_config, vlm.processor, dataset, resolved, tmp_path / "out",
                            StatusWriter(tmp_path / "out", enabled=False), {"bf16": False, "fp16": False, "use_cpu": True})
    batch = trainer.data_collator([dataset[0]])
    full = len(vlm.processor.tokenizer(LONG_CAPTION)["input_ids"])
    assert full > options.max_length  # the caption alone is longer than the limit...
    assert batch["input_ids"].shape[1] == options.max_length  # ...and the example was cut to it
