"""Proof that reviewers' corrections teach the model, and the training paths around it.

Synthetic shapes (tests/synthetic_shapes.py) go through the real queue as approved corrections,
the real export, `python app.py train` and `python app.py eval`, on the CPU with the demo model.
The trained version is shared by the tests of this file (training is the slow part).
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.synthetic_shapes import QUESTION
from tests.train_support import REPO, app_py, approve_shapes, export_to, last_json

pytestmark = pytest.mark.slow

PROOF_ITEMS = 330
SPLIT = 0.8  # train share: leaves >= 50 held-out items out of 330


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from annotate.store import Store

    root = tmp_path_factory.mktemp("train")
    store = Store(f"sqlite:///{root / 'studio.db'}", root / "data")
    truth = approve_shapes(store, PROOF_ITEMS, seed=0)
    llava = export_to(store, root / "export-llava", "llava", split=SPLIT)
    parquet = export_to(store, root / "export-hq", "humancaptionhq", split=SPLIT)
    yield SimpleNamespace(root=root, store=store, truth=truth, llava=llava, parquet=parquet)
    store.close()


@pytest.fixture(scope="module")
def proof(shapes, artifacts_dir):
    """Train the demo model with its defaults, then evaluate before and after, all through app.py."""
    out = shapes.root / "shapes-lora"
    began = time.perf_counter()
    summary = last_json(app_py("train", "--data", str(shapes.llava), "--base", "demo", "--out", str(out)).stdout)
    train_s = time.perf_counter() - began
    before = last_json(app_py("eval", "--model", "demo", "--data", str(shapes.llava),
                              "--save", str(shapes.root / "eval-base.json")).stdout)
    after = last_json(app_py("eval", "--model", "demo", "--adapter", str(out), "--data", str(shapes.llava)).stdout)
    record = {"train_seconds_wall": round(train_s, 1), "train": summary["metrics"],
              "before": before["metrics"], "after": after["metrics"], "samples_after": after["samples"][:3]}
    (artifacts_dir / "train-proof.json").write_text(json.dumps(record, indent=2))
    return SimpleNamespace(out=out, summary=summary, before=before, after=after)


def test_corrections_teach_the_model(shapes, proof):
    counts = json.loads((shapes.llava / "manifest.json").read_text())["counts"]
    assert counts["train"] >= 200 and counts["test"] >= 50
    before, after = proof.before["metrics"], proof.after["metrics"]
    assert before["n"] == after["n"] == counts["test"]
    assert before["token_f1"] < 0.2
    assert after["token_f1"] >= 0.8, after
    assert after["bleu4"] > before["bleu4"] + 40
    assert after["edit_distance"] < before["edit_distance"] - 0.4


def test_version_folder_traces_back_to_its_corrections(shapes, proof):
    from model.loader import model_version
    from train.versions import read_version

    out = proof.out
    for name in ("adapter_config.json", "adapter_model.safetensors", "training/training_config.json",
                 "training/data_manifest.json", "metrics.json", "training/progress.jsonl", "studio_version.json",
                 "training/eval.json", "README.md"):
        assert (out / name).is_file(), name
    version = read_version(out)
    assert version.base == "demo" and version.method == "lora" and version.base_is_demo
    assert version.load == {"model": "demo", "adapter": str(out)}
    manifest = json.loads((out / "training" / "data_manifest.json").read_text())
    exported = json.loads((shapes.llava / "manifest.json").read_text())["item_ids"]
    assert manifest["items"]["train"] == [str(i) for i in exported["train"]]
    assert manifest["export"] == str(shapes.llava)
    config = json.loads((out / "training" / "training_config.json").read_text())
    assert (config["lr"], config["lora_r"], config["epochs"], config["defaults"]) == (3e-3, 32, 20, "demo model")
    assert model_version("demo", str(out)).endswith("+" + version.version)
    # eval saved its JSON next to the adapter, under the version the loader reports.
    assert version.evaluation("after")["metrics"] == proof.after["metrics"]


def test_trained_adapter_serves_in_the_app_and_changes_its_captions(shapes, proof):
    from model.generate import GenerationSettings
    from model.images import load_image
    from model.loader import LoadConfig
    from model.slot import ModelSlot
    from train.data import ExportData
    from train.metrics import token_f1
    from train.versions import read_version

    example = ExportData(shapes.llava).split("heldout")[0]
    image, settings = load_image(example.image), GenerationSettings(max_new_tokens=48)
    slot = ModelSlot(LoadConfig(model="demo"))
    untrained = slot.get().caption(image, QUESTION, settings)
    slot.swap(read_version(proof.out).load_config(slot.config))
    trained = slot.get().caption(image, QUESTION, settings)
    assert trained != untrained
    assert token_f1(trained, example.answer) > token_f1(untrained, example.answer)
    assert slot.get().info.adapter == str(proof.out)


def _train_in_process(tmp: Path, data: Path, **options) -> Path:
    from train.options import TrainOptions
    from train.trainer import train

    return train(TrainOptions(data=str(data), base="demo", out=str(tmp), batch_size=8, **options))


def test_full_fine_tune_freezes_the_vision_tower(shapes, tmp_path):
    from safetensors.torch import load_file

    from model.demo import demo_model_dir
    from model.loader import LoadConfig, load_model
    from train.versions import read_version

    out = _train_in_process(tmp_path / "full", shapes.parquet, method="full", max_steps=3)
    version = read_version(out)
    assert version.load == {"model": str(out), "adapter": None} and version.data["format"] == "humancaptionhq"
    base, tuned = load_file(demo_model_dir() / "model.safetensors"), load_file(out / "model.safetensors")
    # The version is saved in the LLaVA layout older readers expect (train/portable.py).
    tuned = {k.replace("vision_tower.vision_model.", "vision_tower."): v for k, v in tuned.items()}
    vision = [k for k in base if "vision_tower" in k]
    assert vision and all((base[k] == tuned[k]).all() for k in vision)
    assert any(not (base[k] == tuned[k]).all() for k in base if "language_model" in k or "projector" in k)
    vlm = load_model(LoadConfig(model=str(out)))
    assert vlm.info.version == version.version


def test_merged_lora_matches_the_adapter(shapes, tmp_path):
    from model.images import load_image
    from model.generate import GenerationSettings
    from model.loader import LoadConfig, load_model
    from train.data import ExportData

    out = _train_in_process(tmp_path / "merged", shapes.llava, max_steps=4, merge=True)
    assert (out / "model.safetensors").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    image = load_image(ExportData(shapes.llava).split("heldout")[1].image)
    settings = GenerationSettings(max_new_tokens=24)
    merged = load_model(LoadConfig(model=str(out))).caption(image, QUESTION, settings)
    adapter = load_model(LoadConfig(model="demo", adapter=str(out / "adapter"))).caption(image, QUESTION, settings)
    assert merged == adapter


def test_qlora_trains_on_a_4bit_base(shapes, tmp_path):
    from train.versions import read_version

    out = _train_in_process(tmp_path / "qlora", shapes.llava, method="qlora", max_steps=2)
    config = json.loads((out / "training" / "training_config.json").read_text())
    assert read_version(out).method == "qlora" and config["method"] == "qlora"
    assert (out / "adapter_model.safetensors").is_file()


def test_resume_after_a_kill_continues_like_an_uninterrupted_run(shapes, tmp_path):
    from safetensors.torch import load_file

    from train.progress import read_eval_progress, read_progress

    flags = ["--max-steps", "12", "--save-steps", "4", "--batch-size", "8"]
    straight = _train_in_process(tmp_path / "straight", shapes.llava, max_steps=12, save_steps=4)
    out = tmp_path / "killed"
    argv = [sys.executable, str(REPO / "app.py"), "train", "--data", str(shapes.llava), "--base", "demo",
            "--out", str(out), *flags]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / "training" / "checkpoints" / "checkpoint-8" / "trainer_state.json").exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "studio_version.json").exists()
    app_py("train", "--data", str(shapes.llava), "--base", "demo", "--out", str(out), *flags, "--resume")
    a, b = read_progress(straight), read_progress(out)
    assert [p["step"] for p in b] == [p["step"] for p in a] == list(range(1, 13))
    assert [p["loss"] for p in b] == pytest.approx([p["loss"] for p in a], rel=1e-4)
    ea, eb = read_eval_progress(straight), read_eval_progress(out)  # the held-out curve resumes too
    assert [p["step"] for p in eb] == [p["step"] for p in ea] and len(ea) >= 12 // 2
    assert [p["eval_loss"] for p in eb] == pytest.approx([p["eval_loss"] for p in ea], rel=1e-4)
    wa, wb = load_file(straight / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    assert all((wa[k] - wb[k]).abs().max() < 1e-4 for k in wa)


def test_compare_captions_one_photo_with_two_versions(shapes, proof):
    from model.generate import GenerationSettings
    from model.images import load_image
    from model.loader import LoadConfig
    from model.slot import ModelSlot
    from train.data import ExportData
    from train.versions import BASE_CHOICE, compare_captions, config_for, version_choices

    slot = ModelSlot(LoadConfig(model="demo"))
    serving = slot.get()
    choices = [value for _, value in version_choices(shapes.root, "demo")]
    assert choices[0] == BASE_CHOICE and str(proof.out) in choices
    configs = [config_for(c, slot.config, "demo") for c in (BASE_CHOICE, str(proof.out))]
    image = load_image(ExportData(shapes.llava).split("heldout")[2].image)
    base_caption, trained_caption = compare_captions(slot, configs, image, QUESTION,
                                                     GenerationSettings(max_new_tokens=32))
    assert base_caption != trained_caption
    assert slot.get() is serving  # the serving model was reused, not replaced


def test_eval_checks_the_data_before_loading_the_model(tmp_path):
    """A wrong --data is reported at once: with HumanVLM, loading first would cost minutes."""
    result = app_py("eval", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path / "no-export"), check=False)
    assert result.returncode == 2 and "no export folder" in result.stderr and "could not load" not in result.stderr
