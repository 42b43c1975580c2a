"""A trained version is a Hub model repository as it is: its card parsed by huggingface_hub, its
adapter config by peft, no absolute path at the top level, the training state under training/,
TensorBoard runs in runs/, plain transformers + peft captioning like the app, and `push`."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_app
from tests.synthetic_shapes import QUESTION
from tests.test_publish import _Hub, local_hub
from tests.train_support import approve_shapes, export_to

pytestmark = pytest.mark.slow  # a short training run: about half a minute on two cores


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    from annotate.store import Store
    from train.options import TrainOptions
    from train.trainer import train

    root = tmp_path_factory.mktemp("version")
    with Store(f"sqlite:///{root / 'studio.db'}", root / "data") as store:
        approve_shapes(store, 12, seed=5)
        data = export_to(store, root / "export", "llava", split=0.75)
    out = train(TrainOptions(data=str(data), base="demo", out=str(root / "v1"), max_steps=3, batch_size=4,
                             save_steps=2, evaluate=True, report_to="tensorboard"))
    return out


def test_the_card_and_the_adapter_config_read_with_the_hub_libraries(version):
    from huggingface_hub import ModelCard
    from peft import PeftConfig

    from train.card import DEMO_MARKER

    card = ModelCard.load(version / "README.md")
    meta = card.data.to_dict()
    assert (meta["library_name"], meta["pipeline_tag"], meta["license"]) == ("peft", "image-text-to-text", "apache-2.0")
    assert "base_model" not in meta  # the demo model is not on the Hub: named in the body instead
    assert {"humanvlm", "lora"} <= set(meta["tags"])
    assert "offline demo model" in card.text and "| lora_r | 32 |" in card.text
    assert "| bleu4 |" in card.text and "Not evaluated" not in card.text  # before/after scores
    assert "PeftModel.from_pretrained(" in card.text
    assert PeftConfig.from_pretrained(str(version)).base_model_name_or_path == DEMO_MARKER


def test_no_absolute_path_at_the_top_level_and_the_training_state_in_training(version):
    from train.versions import read_version

    top = sorted(p.name for p in version.iterdir())
    for name in ("status.json", "progress.jsonl", "training_args.bin", "checkpoints", "eval.json", "train.log"):
        assert name not in top
    state = version / "training"
    for name in ("status.json", "progress.jsonl", "training_args.bin", "eval.json", "training_config.json",
                 "data_manifest.json"):
        assert (state / name).is_file(), name
    assert any((state / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    for path in version.iterdir():
        if path.is_file() and path.suffix in (".json", ".md", ".jinja", ".txt"):
            text = path.read_text()
            assert str(version.parent) not in text and str(Path.home()) + "/" not in text, path.name
    assert read_version(version).load == {"model": "demo", "adapter": str(version.resolve())}
    assert list((version / "runs").rglob("events.out.tfevents.*"))  # TensorBoard, where the Hub looks


def test_plain_transformers_and_peft_caption_like_the_app(version):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from model.demo import demo_model_dir
    from model.generate import GenerationSettings
    from model.images import load_image
    from model.loader import LoadConfig, load_model
    from train.data import ExportData

    image = load_image(ExportData(version.parent / "export").split("all")[0].image)
    app = load_model(LoadConfig(model="demo", adapter=str(version)))
    expected = app.caption(image, QUESTION, GenerationSettings(max_new_tokens=24))
    # What the model card says, by folder: the base, the adapter, the processor saved with it.
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(demo_model_dir()), str(version))
    processor = AutoProcessor.from_pretrained(str(version))
    prompt = ("<|start_header_id|>user<|end_header_id|>\n\n<image>\n" + QUESTION
              + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=24, do_sample=False,
                             eos_token_id=processor.tokenizer.convert_tokens_to_ids("<|eot_id|>"))
    caption = processor.tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert caption == expected and caption


def test_push_sends_the_card_naming_the_repository(version):
    with local_hub() as endpoint:
        done = run_app("push", str(version), "--repo", "me/shapes-v1", "--private", "--dataset", "me/corrections",
                       env={"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_local_test_token"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "could not push" in done.stderr and "model repository me/shapes-v1" in done.stderr
    created = json.loads(_Hub.requests[0][2])
    assert (created["type"], created["name"], created["visibility"]) == ("model", "shapes-v1", "private")
    card = json.loads(_Hub.requests[1][2])["content"]
    assert card == (version / "README.md").read_text()
    assert 'from_pretrained("me/shapes-v1")' in card and "- me/corrections" in card


def test_push_refuses_what_is_not_a_version(tmp_path):
    done = run_app("push", str(tmp_path), "--repo", "me/x")
    assert done.returncode == 2 and "not a trained version" in done.stderr


def test_eval_takes_the_exports_own_split_name(version, tmp_path):
    from tests.train_support import last_json

    done = run_app("eval", "--model", "demo", "--adapter", str(version), "--data", str(version.parent / "export"),
                   "--split", "test", "--save", str(tmp_path / "eval.json"))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((version.parent / "export" / "manifest.json").read_text())
    result = last_json(done.stdout)
    assert result["split"] == "heldout" and result["metrics"]["n"] == manifest["counts"]["test"]
    assert "cider" in result["metrics"]


def test_a_merged_version_is_a_transformers_repository_too(version, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoConfig

    from train.options import TrainOptions
    from train.trainer import train
    from train.versions import read_version

    out = train(TrainOptions(data=str(version.parent / "export"), base="demo", out=str(tmp_path / "merged"),
                             max_steps=1, batch_size=4, merge=True, report_to="none"))
    meta = ModelCard.load(out / "README.md").data.to_dict()
    assert (meta["library_name"], meta["pipeline_tag"]) == ("transformers", "image-text-to-text")
    assert "AutoModelForImageTextToText.from_pretrained(" in ModelCard.load(out / "README.md").text
    assert AutoConfig.from_pretrained(str(out)).model_type == "llava"
    for path in [*out.iterdir(), *(out / "adapter").iterdir()]:
        if path.is_file() and path.suffix in (".json", ".md", ".jinja", ".txt"):
            assert str(tmp_path) not in path.read_text() and str(Path.home()) + "/" not in path.read_text(), path
    assert read_version(out).load == {"model": str(out.resolve()), "adapter": None}
    assert not (out / "runs").exists()  # --report-to none
