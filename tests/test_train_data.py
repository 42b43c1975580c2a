"""Training input: real exports of the queue read back, the training text, the loss mask, options."""

import json

import pytest

from train.data import ExportData, prompt_and_completion, to_dataset
from tests.synthetic_shapes import QUESTION
from tests.train_support import approve_shapes, export_to


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    from annotate.store import Store

    root = tmp_path_factory.mktemp("train-data")
    store = Store(f"sqlite:///{root / 'studio.db'}", root / "data")
    truth = approve_shapes(store, 24, seed=3)
    yield store, truth, root
    store.close()


@pytest.fixture(scope="module")
def exports(queue):
    store, _, root = queue
    return {fmt: export_to(store, root / fmt, fmt, split=0.75) for fmt in ("llava", "humancaptionhq")}


def test_both_export_formats_read_back_with_the_exports_split(queue, exports):
    _, truth, _ = queue
    for fmt, folder in exports.items():
        data = ExportData(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert data.format == fmt
        for split in ("train", "heldout"):
            examples = data.split(split)
            exported = manifest["item_ids"]["test" if split == "heldout" else split]  # the export's name
            assert sorted(int(e.id) for e in examples) == sorted(exported)
            for e in examples:
                assert e.answer == truth[int(e.id)]
                assert e.prompt == QUESTION
                assert e.image.is_file()
        assert data.counts()["train"] + data.counts()["heldout"] == len(truth)
        assert data.describe()["items"]["train"] == [e.id for e in data.split("train")]


def test_training_prompt_is_exactly_the_inference_prompt(demo_vlm):
    prompt, completion = prompt_and_completion(demo_vlm, QUESTION, "a red circle in the center.")
    tokenizer = demo_vlm.processor.tokenizer
    rendered = demo_vlm.prompt_text([(QUESTION, None)])  # what VLM.caption tokenizes
    # TRL's collator tokenizes without special tokens; inference adds BOS: same ids either way.
    assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == tokenizer(rendered)["input_ids"]
    assert completion == "a red circle in the center." + demo_vlm.prompt_format.stop_token


def test_loss_falls_on_answer_tokens_only(exports):
    """The collator SFTTrainer really uses masks prompt and image tokens; the answer and its
    end-of-turn token are the only labels."""
    from model.loader import LoadConfig, load_model
    from train.options import TrainOptions, resolve
    from train.progress import StatusWriter
    from train.trainer import build_trainer, prepare_model

    vlm = load_model(LoadConfig(model="demo"))  # its own copy: the trainer changes requires_grad
    data = ExportData(exports["llava"])
    examples = data.split("train")[:2]
    options = TrainOptions(data=str(exports["llava"]), base="demo", out="unused", method="full", max_steps=1)
    resolved = resolve(options, is_demo=True)
    model, peft_config = prepare_model(vlm.model, resolved)
    dataset = to_dataset(examples, vlm, QUESTION)
    out = exports["llava"].parent / "collator-check"
    trainer = build_trainer(model, peft_config, vlm.processor, dataset, resolved, out,
                            StatusWriter(out, enabled=False), {"bf16": False, "fp16": False, "use_cpu": True})
    batch = trainer.data_collator([dataset[0], dataset[1]])
    tokenizer = vlm.processor.tokenizer
    image_id = vlm.model.config.image_token_id
    for row, example in enumerate(examples):
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        assert (ids == image_id).sum() == 64  # 8x8 patches of the demo model's SigLIP tower
        assert (labels[ids == image_id] == -100).all()
        kept = labels[labels != -100].tolist()
        assert tokenizer.decode(kept) == example.answer + "<|eot_id|>"


def test_train_help_lists_both_recipes(capsys):
    from app.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for needle in ("--method {lora,qlora,full}", "--resume", "--merge", "--save-steps", "r=128 alpha=256",
                   "lr 5e-05", "demo model", "accelerate launch app.py train"):
        assert needle in text


def test_options_per_model_defaults_and_round_trip():
    import argparse

    from train.options import DEMO_DEFAULTS, HUMANVLM_DEFAULTS, TrainOptions, add_dataclass_arguments, from_args, \
        resolve, to_argv

    options = TrainOptions(data="d", base="b", out="o", lr=1e-4, resume=True, max_steps=7)
    real, demo = resolve(options, is_demo=False), resolve(options, is_demo=True)
    assert (real.lr, real.lora_r, real.lora_alpha, real.epochs) == (1e-4, 128, 256, HUMANVLM_DEFAULTS.epochs)
    assert (demo.batch_size, demo.lora_r, demo.defaults.train_embeddings) == (DEMO_DEFAULTS.batch_size, 32, True)
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainOptions)
    assert from_args(TrainOptions, parser.parse_args(to_argv(options))) == options


def test_bad_training_requests_fail_with_one_clear_line(tmp_path, exports, capsys):
    from app.cli import main

    cases = [
        (["--data", str(tmp_path / "missing"), "--base", "demo", "--out", str(tmp_path / "a")], "no export folder"),
        (["--data", str(exports["llava"]), "--base", "demo", "--out", str(tmp_path / "b"), "--batch-size", "0"],
         "--batch-size must be at least 1"),
        (["--data", str(exports["llava"]), "--base", "demo", "--out", str(tmp_path / "c"), "--method", "full",
          "--merge"], "--merge applies to LoRA"),
    ]
    for argv, message in cases:
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], err
