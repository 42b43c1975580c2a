"""`train` and `eval` subcommands: thin wrappers over train.trainer and train.evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from train.options import (
    DEMO_DEFAULTS,
    HUMANVLM_DEFAULTS,
    EvalOptions,
    TrainOptions,
    add_dataclass_arguments,
    from_args,
)

TRAIN_EPILOG = f"""\
per-model defaults (any flag given wins):
  {HUMANVLM_DEFAULTS.name}: LoRA r={HUMANVLM_DEFAULTS.lora_r} alpha={HUMANVLM_DEFAULTS.lora_alpha} dropout 0.05 on the \
language model and the vision tower, projector trained,
    lr {HUMANVLM_DEFAULTS.lr:g}, 3% warmup then cosine, {HUMANVLM_DEFAULTS.epochs:g} epoch, batch \
{HUMANVLM_DEFAULTS.batch_size} x {HUMANVLM_DEFAULTS.grad_accum} accumulation, gradient checkpointing.
  {DEMO_DEFAULTS.name} (random weights): LoRA r={DEMO_DEFAULTS.lora_r} alpha={DEMO_DEFAULTS.lora_alpha} on the \
language model, projector, lm_head and embeddings trained,
    lr {DEMO_DEFAULTS.lr:g}, {DEMO_DEFAULTS.epochs:g} epochs, batch {DEMO_DEFAULTS.batch_size}: it learns nothing \
useful with HumanVLM's settings.

several GPUs: accelerate launch app.py train --data DIR --base MODEL --out DIR
  (one process per GPU; --batch-size is per GPU)
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune a model on approved corrections (HumanVLM's stage two)",
        description="Fine-tune a base model on an export of approved corrections. The output folder "
                    "loads with --model BASE --adapter OUT (or --model OUT after --merge or --method full).",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(p, TrainOptions)
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "eval", help="caption the held-out split and score it against the reviewers' captions",
        description="Caption a split of an export and print BLEU-4, chrF (sacrebleu, 0-100), ROUGE-L, token F1, "
                    "exact match and mean normalized edit distance as one JSON object; the result is also "
                    "saved next to the model (eval.json).")
    add_dataclass_arguments(e, EvalOptions)
    from model.loader import add_model_arguments

    add_model_arguments(e)
    e.set_defaults(func=run_eval)

    from train import push

    push.register(subparsers)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def run_train(args) -> int:
    from train.trainer import train
    from train.versions import read_version

    _logging()
    out = train(from_args(TrainOptions, args))
    version = read_version(out)
    if version is not None:  # None on the other ranks of a multi-GPU run
        print(json.dumps({"out": str(out), "version": version.version, "load": version.load,
                          "metrics": version.metrics,
                          "eval": {"before": _scores(version.evaluation("before")),
                                   "after": _scores(version.evaluation("after"))}}))
    return 0


def _scores(run: dict | None) -> dict | None:
    return run["metrics"] if run else None


def run_eval(args) -> int:
    from model.loader import config_from_args, load_model
    from train.evaluate import default_save_path, eval_examples, evaluate, save_result

    _logging()
    options = from_args(EvalOptions, args)
    eval_examples(options)  # a wrong --data fails now, not after loading a 17 GB model
    config = config_from_args(args)
    vlm = load_model(config)
    result = evaluate(vlm, options)
    path = save_result(result, options.save or default_save_path(vlm, options.data))
    print(json.dumps(result | {"saved_to": str(path)}, ensure_ascii=False))
    return 0
