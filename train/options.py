"""Options of `train` and `eval`: one dataclass each, the single source of CLI help and docs.

Fields left at None take a per-model default (`ModelDefaults`): HumanVLM's own stage-two recipe
for real checkpoints, and a recipe that lets the randomly initialised demo model learn at all
(its `lm_head` and embeddings trainable, a much higher learning rate, many epochs).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

METHODS = ("lora", "qlora", "full")
REPORTERS = ("auto", "tensorboard", "trackio", "wandb", "none")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# transformers' `lr_scheduler_type` values that need no extra arguments (`lr_scheduler_kwargs`).
SCHEDULERS = ("cosine", "linear", "constant_with_warmup", "constant", "cosine_with_restarts", "polynomial",
              "inverse_sqrt")
# The linear layers LoRA may adapt: the language model's (Llama) and the vision encoder's (SigLIP).
# The projector is trained in full, so it is no LoRA target. "all" is every one of them.
LLM_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
LORA_TARGETS = tuple(dict.fromkeys(LLM_TARGETS + VISION_TARGETS))


def _opt(default, help: str, type=None, choices=None, required=False):
    return field(default=default, metadata={"help": help, "type": type, "choices": choices, "required": required})


@dataclass(frozen=True)
class ModelDefaults:
    """Defaults for one kind of base model (shown in `train --help`)."""

    name: str
    epochs: float
    lr: float
    batch_size: int
    grad_accum: int
    lora_r: int
    lora_alpha: int
    train_embeddings: bool  # lm_head and input embeddings trained in full (LoRA keeps them frozen otherwise)
    eval_max_new_tokens: int
    gradient_checkpointing: bool  # trade compute for memory: needed for 8B on one GPU, a waste on the demo
    vision_lora: bool = False  # LoRA on the vision tower's linear layers too (the LoRA methods)


# HumanVLM's stage two (docs/humanvlm.md): LoRA r=128/alpha=256/dropout 0.05 on the LLM and on
# the SigLIP vision tower, projector trained in full, lr 5e-5, 1 epoch. Its global batch of ~256
# would be a single step on a few hundred corrections: 4 x 4 = 16 here.
HUMANVLM_DEFAULTS = ModelDefaults("HumanVLM (stage two)", epochs=1, lr=5e-5, batch_size=4, grad_accum=4,
                                  lora_r=128, lora_alpha=256, train_embeddings=False, eval_max_new_tokens=400,
                                  gradient_checkpointing=True, vision_lora=True)
# The demo model starts from random weights: without a trainable lm_head and a high learning
# rate it learns nothing useful in minutes; 20 epochs of a few hundred items take ~1 min on a CPU.
DEMO_DEFAULTS = ModelDefaults("demo model", epochs=20, lr=3e-3, batch_size=16, grad_accum=1,
                              lora_r=32, lora_alpha=64, train_embeddings=True, eval_max_new_tokens=64,
                              gradient_checkpointing=False)


def _default_help(attr: str) -> str:
    return f"default {getattr(HUMANVLM_DEFAULTS, attr):g} for HumanVLM, {getattr(DEMO_DEFAULTS, attr):g} for the demo model"


@dataclass
class TrainOptions:
    """How to fine-tune. Every field is a `train` flag (underscores become dashes)."""

    data: str = _opt(None, "export folder written by `app.py export` (llava JSON or humancaptionhq parquet)", required=True)
    base: str = _opt(None, "base model: hub id, local folder, or 'demo' for the offline demo model", required=True)
    out: str = _opt(None, "output folder for the new version (adapter or model, config, manifest, metrics)", required=True)
    method: str = _opt("lora", "lora: adapters on the language model (and the vision tower: --vision-tower), projector "
                       "trained | qlora: the same on a 4-bit "
                       "nf4 base (bitsandbytes) | full: projector + language model, vision tower frozen",
                       choices=METHODS)
    epochs: float | None = _opt(None, "passes over the training split; " + _default_help("epochs"), type=float)
    max_steps: int | None = _opt(None, "optimizer steps to run (overrides --epochs)", type=int)
    lr: float | None = _opt(None, "peak learning rate (warmup, then --lr-scheduler-type); " + _default_help("lr"),
                            type=float)
    batch_size: int | None = _opt(None, "images per device per step; " + _default_help("batch_size"), type=int)
    grad_accum: int | None = _opt(None, "gradient accumulation steps; " + _default_help("grad_accum"), type=int)
    warmup_ratio: float = _opt(0.03, "share of the steps spent warming the learning rate up", type=float)
    lr_scheduler_type: str = _opt("cosine", "how the learning rate falls after the warmup (transformers' "
                                  "lr_scheduler_type); cosine is HumanVLM's", choices=SCHEDULERS)
    lora_r: int | None = _opt(None, "LoRA rank; " + _default_help("lora_r"), type=int)
    lora_alpha: int | None = _opt(None, "LoRA alpha; " + _default_help("lora_alpha"), type=int)
    lora_dropout: float = _opt(0.05, "LoRA dropout", type=float)
    lora_targets: str = _opt("all", "linear layers LoRA adapts, comma-separated: all (HumanVLM's stage two) or some of "
                             f"{', '.join(LORA_TARGETS)} ({', '.join(LLM_TARGETS)} in the language model; "
                             f"{', '.join(VISION_TARGETS)} in the vision tower, with --vision-tower lora)")
    vision_tower: str | None = _opt(None, "lora: LoRA on the vision tower too (HumanVLM's stage two) | frozen: leave "
                                    "it as it is (less memory); default lora for HumanVLM, frozen for the demo "
                                    "model; --method full always leaves it frozen", choices=("lora", "frozen"))
    save_steps: int = _opt(50, "write a resumable checkpoint every N optimizer steps", type=int)
    eval_steps: int | None = _opt(None, "compute the loss on the held-out split every N optimizer steps (the "
                                  "eval-loss curve; none when the split is empty); default about 20 times a run",
                                  type=int)
    save_limit: int = _opt(2, "checkpoints kept (older ones are deleted)", type=int)
    resume: bool = _opt(False, "continue from the last checkpoint in --out (after a crash, kill or cancel)")
    merge: bool = _opt(False, "merge the LoRA weights into the base and save a full model (loads with --model OUT)")
    evaluate: bool = _opt(False, "after training, caption the held-out split with the base and the new "
                          "version and save both scores in OUT/eval.json")
    seed: int = _opt(0, "random seed (data order, adapter initialisation, dropout)", type=int)
    max_length: int | None = _opt(3400, "truncate longer sequences to this many tokens, image tokens included "
                                  "(HumanVLM trained at about 3.4k; one over-long caption cannot run a training out of memory)", type=int)
    dtype: str = _opt("auto", "auto (bf16 on GPUs that have it, else fp16; fp32 on CPU) | float32 | bfloat16 | float16",
                      choices=DTYPES)
    cache_dir: str | None = _opt(None, "where the demo model is built (default $HUMANVLM_CACHE)")
    report_to: str = _opt("auto", "where transformers reports the run: tensorboard (into OUT/runs/, a tab on the Hub) | "
                          "trackio | wandb | none | auto (tensorboard when installed, else none)",
                          choices=REPORTERS)


@dataclass(frozen=True)
class Resolved:
    """TrainOptions with every per-model default filled in."""

    options: TrainOptions
    defaults: ModelDefaults
    is_demo: bool  # the base is the demo model or a version trained from it
    epochs: float
    lr: float
    batch_size: int
    grad_accum: int
    lora_r: int
    lora_alpha: int
    vision_lora: bool = False
    lora_targets: tuple[str, ...] = LLM_TARGETS  # layer names (LoRA methods only)

    def as_dict(self) -> dict:
        return asdict(self.options) | {
            "defaults": self.defaults.name, "epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size,
            "grad_accum": self.grad_accum, "lora_r": self.lora_r, "lora_alpha": self.lora_alpha,
            "train_embeddings": self.defaults.train_embeddings, "vision_lora": self.vision_lora,
            "lora_target_modules": list(self.lora_targets),
        }


def resolve(options: TrainOptions, is_demo: bool) -> Resolved:
    from train.errors import OptionsError

    if options.method not in METHODS:
        raise OptionsError(f"unknown method {options.method!r}; use {', '.join(METHODS)}")
    d = DEMO_DEFAULTS if is_demo else HUMANVLM_DEFAULTS
    pick = lambda value, default: default if value is None else value  # noqa: E731
    resolved = Resolved(options, d, is_demo, epochs=pick(options.epochs, d.epochs), lr=pick(options.lr, d.lr),
                        batch_size=pick(options.batch_size, d.batch_size), grad_accum=pick(options.grad_accum, d.grad_accum),
                        lora_r=pick(options.lora_r, d.lora_r), lora_alpha=pick(options.lora_alpha, d.lora_alpha),
                        vision_lora=options.method != "full" and pick(options.vision_tower, "lora" if d.vision_lora
                                                                        else "frozen") == "lora")
    if options.method == "full" and options.vision_tower == "lora":
        raise OptionsError("--vision-tower lora applies to LoRA methods; --method full leaves the vision tower frozen")
    for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha"):
        if getattr(resolved, name) < 1:
            raise OptionsError(f"--{name.replace('_', '-')} must be at least 1")
    if resolved.lr <= 0 or resolved.epochs <= 0 or (options.max_steps is not None and options.max_steps < 1):
        raise OptionsError("--lr, --epochs and --max-steps must be positive")
    if options.save_steps < 1:
        raise OptionsError("--save-steps must be at least 1")
    if options.merge and options.method == "full":
        raise OptionsError("--merge applies to LoRA methods; a full fine-tune is already a whole model")
    if options.eval_steps is not None and options.eval_steps < 1:
        raise OptionsError("--eval-steps must be at least 1")
    for name, value, allowed in (("lr-scheduler-type", options.lr_scheduler_type, SCHEDULERS),
                                 ("dtype", options.dtype, DTYPES), ("report-to", options.report_to, REPORTERS)):
        if value not in allowed:
            raise OptionsError(f"--{name} is one of {', '.join(allowed)}, not {value!r}")
    return replace(resolved, lora_targets=lora_targets(options, resolved.vision_lora))


def lora_targets(options: TrainOptions, vision_lora: bool) -> tuple[str, ...]:
    """`--lora-targets` as module names, checked against the layers this method can adapt."""
    from train.errors import OptionsError

    text = (options.lora_targets or "").strip() or "all"
    if text == "all":
        return LORA_TARGETS if vision_lora else LLM_TARGETS
    if options.method == "full":
        raise OptionsError("--lora-targets applies to LoRA methods; --method full trains the language model in full")
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in LORA_TARGETS]
    if not names or unknown:
        raise OptionsError(f"unknown LoRA target {', '.join(map(repr, unknown)) or repr(text)}: give all, or some of "
                           f"{', '.join(LORA_TARGETS)}, comma-separated")
    vision_only = [n for n in names if n not in LLM_TARGETS]
    if vision_only and not vision_lora:
        raise OptionsError(f"LoRA target {', '.join(vision_only)} is a vision-tower layer and the vision tower is "
                           f"frozen: pick language-model layers ({', '.join(LLM_TARGETS)}) or --vision-tower lora")
    return names


def defaults_for(base: str | None) -> ModelDefaults:
    """The recipe a base gets, told from its name without loading it (as the trainer tells it after
    loading): the demo model, a demo folder and versions trained from them take the demo's recipe."""
    from pathlib import Path

    if base == "demo":
        return DEMO_DEFAULTS
    path = Path(base) if base else None
    if path is not None and path.is_dir():
        if path.name.startswith("demo-model-") or (path / "demo_spec.json").exists():  # as model.loader tells
            return DEMO_DEFAULTS
        from train.versions import read_version

        version = read_version(path)
        if version is not None and version.base_is_demo:
            return DEMO_DEFAULTS
    return HUMANVLM_DEFAULTS


def describe_defaults(d: ModelDefaults) -> str:
    """One line of what a recipe sets (shown beside the Train tab's form)."""
    plain = TrainOptions.__dataclass_fields__
    epochs = f"{d.epochs:g} epoch{'' if d.epochs == 1 else 's'}"
    trained = "projector" + (", lm_head and embeddings" if d.train_embeddings else "")
    vision = "language model and vision tower" if d.vision_lora else "language model (vision tower frozen)"
    return (f"{d.name}: lr {d.lr:g} ({plain['warmup_ratio'].default:.0%} warmup, then "
            f"{plain['lr_scheduler_type'].default}), batch {d.batch_size} x {d.grad_accum}, {epochs}, "
            f"LoRA r{d.lora_r}/α{d.lora_alpha} on the {vision}, {trained} trained in full"
            f"{', gradient checkpointing' if d.gradient_checkpointing else ''}")


@dataclass
class EvalOptions:
    """How to evaluate. Every field is an `eval` flag; the model flags come from model.loader."""

    data: str = _opt(None, "export folder written by `app.py export`", required=True)
    split: str = _opt("heldout", "which split to caption: heldout (the export's test split; 'test' is the same) | "
                      "train | all", choices=("heldout", "test", "train", "all"))
    batch_size: int = _opt(8, "images per generate call", type=int)
    max_new_tokens: int | None = _opt(None, "longest caption in tokens; default 400 for HumanVLM, 64 for the demo model", type=int)
    limit: int | None = _opt(None, "evaluate only the first N items of the split", type=int)
    save: str | None = _opt(None, "where to save the JSON (default OUT/eval.json next to the adapter or model folder)")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field: `--field-name`, typed, with the field's help and choices."""
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        if f.default is False:
            parser.add_argument(flag, dest=f.name, action="store_true", help=meta["help"])
            continue
        kwargs = {"dest": f.name, "help": meta["help"], "required": meta.get("required", False)}
        if not kwargs["required"]:
            kwargs["default"] = None if f.default is MISSING else f.default
        if meta.get("type"):
            kwargs["type"] = meta["type"]
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        parser.add_argument(flag, **kwargs)


def from_args(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def to_argv(options: TrainOptions) -> list[str]:
    """The `train` command line for these options (the job runner starts it in a process)."""
    argv = []
    for f in fields(options):
        value = getattr(options, f.name)
        flag = "--" + f.name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif value != f.default or f.metadata.get("required"):
            argv += [flag, str(value)]
    return argv


def with_changes(options: TrainOptions, **changes) -> TrainOptions:
    return replace(options, **changes)
