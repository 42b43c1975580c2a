"""Stage-two fine-tuning: export in, new version out.

Reads top to bottom: options, data, base model, method (LoRA / QLoRA / full with peft),
transformers' `Trainer` with TRL's vision collator (prompt-completion rows, so the loss falls on
the answer tokens only: prompt and image tokens are masked), train, save. The model is loaded through
`model.loader`, exactly as the app serves it, and the training text is rendered by the model's
own prompt format, so what the model learns is what inference asks.

Runs unchanged under `accelerate launch` (one process per GPU): the device comes from
accelerate's state, and only the main process writes files.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
import warnings
from pathlib import Path

from train.data import ExportData, to_dataset
from train.errors import DataError, OptionsError
from train.options import LLM_TARGETS, VISION_TARGETS, Resolved, TrainOptions, resolve
from train.output import (CHECKPOINTS, evaluate_before_after, find_checkpoint, report_targets, save_version,
                          tensorboard_dir)
from train.progress import PROGRESS_FILE, StatusWriter, make_callback
from train.versions import VERSION_FILE

log = logging.getLogger(__name__)

LOGGED_POINTS = 100  # about this many points on the loss curve, whatever the run's length
EVAL_POINTS = 20  # about this many held-out losses per run by default (--eval-steps)
EVAL_LOSS_ITEMS = 256  # the eval-loss curve uses at most this many held-out items (eval.json scores all)


def train(options: TrainOptions) -> Path:
    """Fine-tune `options.base` on the export's train split; returns the output folder."""
    from accelerate import PartialState

    # transformers' Trainer calls its own deprecated property every run: noise in the job log.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    state = PartialState()  # under `accelerate launch`: this process's rank and GPU
    out = Path(options.out).resolve()
    _check_out_dir(out, options.resume)
    out.mkdir(parents=True, exist_ok=True)
    status = StatusWriter(out, enabled=state.is_main_process)
    status.update(phase="loading", step=0, max_steps=None, loss=None, eta_s=None, error=None,
                  started_at=time.time())
    try:
        _train(options, out, state, status)
    except BaseException as exc:  # recorded for the app (the job's reason), then raised as is
        status.fail(exc)
        raise
    status.update(phase="finished", eta_s=0)
    return out


def _train(options: TrainOptions, out: Path, state, status: StatusWriter) -> None:
    from model.prompts import PRESETS

    resolve(options, is_demo=False)  # bad numbers fail now, not after loading 17 GB of weights
    data = ExportData(options.data)
    examples = data.split("train")
    if not examples:
        raise DataError(f"the train split of {data.folder} has no items with images: approve more corrections "
                        "and export again")
    vlm = load_base(options, str(state.device))
    resolved = resolve(options, _demo_family(vlm))
    precision = _precision(vlm.info.dtype, options.method) | {"use_cpu": state.device.type == "cpu"}
    model, peft_config = prepare_model(vlm.model, resolved)
    dataset = to_dataset(examples, vlm, PRESETS["detailed"])
    heldout = data.split("heldout")[:EVAL_LOSS_ITEMS]
    eval_dataset = to_dataset(heldout, vlm, PRESETS["detailed"]) if heldout else None
    trainer = build_trainer(model, peft_config, vlm.processor, dataset, resolved, out, status, precision,
                            world_size=state.num_processes, eval_dataset=eval_dataset)
    checkpoint = find_checkpoint(out) if options.resume else None
    if options.resume and checkpoint is None:
        log.warning("no checkpoint in %s yet: starting from the first step", out)
    log.info("training %s on %d items (%s)", options.base, len(examples), checkpoint or "from the start")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    status.update(phase="saving")
    meta = save_version(trainer, vlm, resolved, data, result, out)
    if state.is_main_process and options.evaluate:
        del trainer, model
        vlm.release()
        status.update(phase="evaluating")
        note = evaluate_before_after(options, meta, out)
        if note:
            status.update(note=note)  # the job shows it; the Models tab says "not evaluated"


def load_base(options: TrainOptions, device: str):
    """The base model through the serving path (4-bit nf4 for QLoRA)."""
    from model.loader import LoadConfig, load_model

    quant = "4bit" if options.method == "qlora" else "none"
    dtype = options.dtype
    if dtype == "auto" and device.startswith("cuda"):
        import torch

        # Training wants bf16 where the GPU has it (fp16 weights cannot be trained in full, and
        # need loss scaling); serving follows the checkpoint's saved dtype instead.
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return load_model(LoadConfig(model=options.base, device=device, dtype=dtype, quant=quant,
                                 cache_dir=options.cache_dir))


def _demo_family(vlm) -> bool:
    from train.versions import is_demo_family

    return is_demo_family(vlm)


def prepare_model(model, resolved: Resolved):
    """`full`: freeze the vision tower, train the rest. LoRA/QLoRA: the peft config to apply."""
    if resolved.options.method == "full":
        for name, param in model.named_parameters():
            param.requires_grad = "vision_tower" not in name
        return model, None
    from peft import LoraConfig

    to_save = ["multi_modal_projector"]
    if resolved.defaults.train_embeddings:
        to_save += ["lm_head", "embed_tokens"]
    targets = lora_pattern(resolved.lora_targets, resolved.vision_lora)
    if (resolved.options.lora_targets or "all").strip() != "all":  # "all": whichever of them this model has
        check_lora_targets(model, resolved.lora_targets, resolved.vision_lora)
    config = LoraConfig(r=resolved.lora_r, lora_alpha=resolved.lora_alpha, lora_dropout=resolved.options.lora_dropout,
                        target_modules=targets, modules_to_save=to_save, bias="none")
    return model, config


def lora_pattern(names: tuple[str, ...], vision: bool) -> str:
    """peft's `target_modules` regex for these layer names: the language model's, and the vision
    encoder's when `vision`. HumanVLM's stage two (docs/humanvlm.md, `--lora-targets all`): every
    linear layer of the language model and of the SigLIP encoder (not its unused pooling head)."""
    llm = [n for n in names if n in LLM_TARGETS]
    seen = [n for n in names if n in VISION_TARGETS] if vision else []
    parts = [rf".*language_model.*\.({'|'.join(llm)})$"] if llm else []
    if seen:
        parts.append(rf".*vision_tower.*encoder\.layers\.\d+\.(?:self_attn|mlp)\.({'|'.join(seen)})$")
    return "|".join(f"(?:{p})" for p in parts)


LLM_LINEAR = lora_pattern(LLM_TARGETS, vision=False)  # every linear layer of the language model


def check_lora_targets(model, names: tuple[str, ...], vision: bool) -> None:
    """Every requested layer name must match a layer of this model (another architecture may
    name its layers differently): a clear error instead of an adapter on fewer layers than asked."""
    import re

    matched = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()
               if re.fullmatch(lora_pattern(names, vision), name)}
    missing = [n for n in names if n not in matched]
    if missing:
        everything = lora_pattern(tuple(dict.fromkeys(LLM_TARGETS + VISION_TARGETS)), vision)
        present = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules()
                          if re.fullmatch(everything, name)})
        raise OptionsError(f"LoRA target {', '.join(missing)} matches no layer of this model; its adaptable layers "
                           f"are {', '.join(present) or 'none'}")


def _precision(dtype: str, method: str) -> dict:
    if dtype == "float16" and method == "full":
        raise OptionsError("full fine-tuning cannot train float16 weights: pass --dtype bfloat16 or float32")
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16"}


def planned_steps(resolved: Resolved, items: int, world_size: int = 1) -> int:
    if resolved.options.max_steps:
        return resolved.options.max_steps
    batches = math.ceil(items / (resolved.batch_size * world_size))
    return max(1, math.ceil(resolved.epochs * math.ceil(batches / resolved.grad_accum)))


def build_trainer(model, peft_config, processor, dataset, resolved: Resolved, out: Path, status, precision: dict,
                  world_size: int = 1, eval_dataset=None):
    """transformers' Trainer with TRL's vision collator (prompt-completion rows, loss on the answer).

    With an `eval_dataset` (the held-out split) the loss on it is computed every `--eval-steps`
    (loss only: keeping the logits would hold batch x tokens x 128k vocabulary floats).

    TRL's SFTTrainer would add a fused LM head and per-step entropy/accuracy metrics: on the
    demo model that cost ~20% of the throughput (tests/perf/bench_train.py), for nothing used here.
    """
    from transformers import Trainer, TrainingArguments, set_seed
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    o = resolved.options
    set_seed(o.seed)  # LoRA weights start random: the same seed gives the same run
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
        if resolved.defaults.gradient_checkpointing:
            model.enable_input_require_grads()
    steps = planned_steps(resolved, len(dataset), world_size)
    if not 0 <= o.warmup_ratio < 1:
        raise OptionsError("--warmup-ratio must be in [0, 1)")
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS), per_device_train_batch_size=resolved.batch_size,
        gradient_accumulation_steps=resolved.grad_accum, learning_rate=resolved.lr,
        num_train_epochs=resolved.epochs, max_steps=o.max_steps or -1,
        lr_scheduler_type=o.lr_scheduler_type, warmup_steps=o.warmup_ratio,  # a float below 1 is a ratio
        logging_steps=max(1, steps // LOGGED_POINTS), save_strategy="steps", save_steps=o.save_steps,
        eval_strategy="steps" if eval_dataset is not None else "no", prediction_loss_only=True,
        eval_steps=o.eval_steps or max(1, steps // LOGGED_POINTS, math.ceil(steps / EVAL_POINTS)),
        per_device_eval_batch_size=resolved.batch_size, label_names=["labels"],
        save_total_limit=o.save_limit, seed=o.seed, data_seed=o.seed, **precision,
        activation_checkpointing=resolved.defaults.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        remove_unused_columns=False,  # the collator needs the image/prompt/completion columns
        report_to=report_targets(o.report_to), run_name=out.name, disable_tqdm=not sys.stderr.isatty(),
        dataloader_num_workers=0,
    )
    collator = DataCollatorForVisionLanguageModeling(processor, max_length=o.max_length, completion_only_loss=True)
    with tensorboard_dir(out):
        return Trainer(model=model, args=args, train_dataset=dataset, eval_dataset=eval_dataset, data_collator=collator,
                       processing_class=processor, callbacks=[make_callback(out, status)])


def _check_out_dir(out: Path, resume: bool) -> None:
    if (out / VERSION_FILE).exists():
        raise OptionsError(f"{out} already holds a trained version; choose a new --out folder")
    has_checkpoints = (out / CHECKPOINTS).is_dir() and any((out / CHECKPOINTS).iterdir())
    if has_checkpoints and not resume:
        raise OptionsError(f"{out} holds checkpoints of an earlier run: pass --resume to continue it, "
                           "or choose a new --out folder")
    if not resume and (out / PROGRESS_FILE).exists():
        (out / PROGRESS_FILE).unlink()  # a fresh run starts a fresh loss curve
    if not resume and (out / CHECKPOINTS).is_dir():
        shutil.rmtree(out / CHECKPOINTS)
