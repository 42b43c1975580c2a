"""What a finished run leaves in its output folder, so any version traces back to its data.

    OUT/adapter_config.json, adapter_model.safetensors   LoRA/QLoRA (load: --model BASE --adapter OUT)
    OUT/config.json, model.safetensors                   full, or --merge (load: --model OUT;
                                                         the adapter is kept in OUT/adapter/)
    OUT/processor and tokenizer files, OUT/README.md     the processor; the model card (train.card)
    OUT/metrics.json           training loss, steps, runtime, throughput, peak memory
    OUT/studio_version.json    the version id, base, method and how to load it (paths relative to OUT)
    OUT/runs/                  TensorBoard logs (--report-to tensorboard)
    OUT/training/              the training state, machine-local, never needed to load the version:
      training_config.json     every option, resolved defaults, library versions
      data_manifest.json       the export (folder, sha256, manifest) and the item ids per split
      progress.jsonl, status.json, train.log   the loss curve, the last state of the run, the job's log
      eval.json                held-out scores (base and new version) when evaluated
      training_args.bin, checkpoints/   transformers' arguments; resumable checkpoints (newest `--save-limit`)
The files at the top level hold no absolute path: the folder is a Hub model repository as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from train import card
from train.merge import merge_into
from train.portable import make_portable
from train.progress import write_json_atomic
from train.versions import VERSION_FILE

log = logging.getLogger(__name__)
TENSORBOARD_ENV = "TENSORBOARD_LOGGING_DIR"
STATE_DIR = "training"  # the training state: not needed to load the version (see above)
CHECKPOINTS = f"{STATE_DIR}/checkpoints"


def find_checkpoint(out: Path) -> str | None:
    """The newest complete checkpoint: trainer_state.json is written last, so a checkpoint cut
    short by a kill has none (or an unreadable one) and is passed over."""
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return None
    candidates = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                        key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for path in candidates:
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            log.warning("skipping incomplete checkpoint %s", path)
            continue
        return str(path)
    return None


def save_version(trainer, vlm, resolved, data, result, out: Path) -> dict:
    """Save weights and provenance; returns the studio_version.json record (main process)."""
    options = resolved.options
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return {}
    state = out / STATE_DIR
    state.mkdir(exist_ok=True)
    if (out / "training_args.bin").exists():  # written by save_model: training state, not the model
        (out / "training_args.bin").replace(state / "training_args.bin")
    if options.merge:
        merge_into(out, options, vlm, trainer.model)
    else:
        vlm.processor.save_pretrained(str(out))  # AutoProcessor.from_pretrained(OUT) works, as for merged models
        make_portable(out)  # a full fine-tune is a whole model: readable by older readers too
    for folder in (out, out / "adapter"):
        card.portable_adapter_config(folder, options.base)
    base_ref = card.base_reference(options.base, out)
    metrics = _metrics(trainer, result, data)
    manifest = data.describe()
    config = resolved.as_dict() | {"base_version": vlm.info.version, "world_size": trainer.args.world_size,
                                   "libraries": _library_versions()}
    stands_alone = options.method == "full" or options.merge
    meta = {
        "version": version_id(out, config, manifest["sha256"], metrics),
        "base": base_ref, "base_version": vlm.info.version,
        "base_is_demo": resolved.is_demo, "method": options.method, "merged": options.merge,
        # Relative to OUT (".": this folder), resolved by train.versions.read_version.
        "load": {"model": "." if stands_alone else base_ref, "adapter": None if stands_alone else "."},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {"export": Path(manifest["export"]).name, "format": manifest["format"], "sha256": manifest["sha256"],
                 "train_items": len(manifest["items"]["train"]), "heldout_items": len(manifest["items"]["heldout"])},
        "metrics": metrics,
    }
    write_json_atomic(state / "training_config.json", config)
    write_json_atomic(state / "data_manifest.json", manifest)
    write_json_atomic(out / "metrics.json", metrics)
    card.write_model_card(out, meta, config)
    write_json_atomic(out / VERSION_FILE, meta)  # last: its presence means the version is complete
    return meta | {"load": resolved_load(meta["load"], out)}


def report_targets(choice: str) -> list[str]:
    """transformers' `report_to` for `--report-to`: `auto` is TensorBoard when it is installed."""
    if choice == "auto":
        from importlib.util import find_spec

        return ["tensorboard"] if find_spec("tensorboard") or find_spec("tensorboardX") else []
    return [] if choice == "none" else [choice]


@contextmanager
def tensorboard_dir(out: Path):
    """TensorBoard logs into OUT/runs/ (where the Hub looks), not under the checkpoints: transformers'
    callback reads the folder from $TENSORBOARD_LOGGING_DIR when the Trainer is built."""
    old = os.environ.get(TENSORBOARD_ENV)
    os.environ[TENSORBOARD_ENV] = str(out / "runs")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(TENSORBOARD_ENV, None)
        else:
            os.environ[TENSORBOARD_ENV] = old


def resolved_load(load: dict, out: Path) -> dict:
    """studio_version.json's `load`, with paths relative to the version folder made absolute."""

    def resolve(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute() or not (value == "." or value.startswith(("./", "../"))):
            return value  # None, a hub id, 'demo', or an absolute path from an older version
        return str((out / value).resolve())

    return {"model": resolve(load.get("model")), "adapter": resolve(load.get("adapter"))}


def version_id(out: Path, *parts) -> str:
    """`<folder name>-<8 hex digits>`: the hex digits hash `parts` and the time, so every run differs."""
    digest = hashlib.sha256(json.dumps([*parts, datetime.now(timezone.utc).isoformat()],
                                       sort_keys=True, default=str).encode())
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in out.name)[:40] or "version"
    return f"{slug}-{digest.hexdigest()[:8]}"


def _metrics(trainer, result, data) -> dict:
    import torch

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    heldout = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        peak["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return {
        "train_loss": round(result.training_loss, 5), "final_loss": losses[-1] if losses else None,
        "first_loss": losses[0] if losses else None, "final_heldout_loss": heldout[-1] if heldout else None,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0, 3), "runtime_s": round(result.metrics.get("train_runtime", 0), 2),
        "samples_per_s": round(result.metrics.get("train_samples_per_second", 0), 3),
        "train_items": data.counts()["train"], **peak,
    }


def _library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


NOT_EVALUATED = "not evaluated: the export's held-out (test) split is empty; the version is usable"


def evaluate_before_after(options, meta: dict, out: Path) -> str | None:
    """Held-out scores of the base and of the new version, both saved in OUT/eval.json.

    Returns a note when there was nothing to evaluate on (an export too small for a held-out
    item): training succeeded, so the version stands, marked as not evaluated."""
    from model.loader import LoadConfig, load_model
    from train.errors import DataError
    from train.evaluate import EVAL_FILE, eval_examples, evaluate, save_result
    from train.options import EvalOptions

    try:
        eval_examples(EvalOptions(data=options.data))
    except DataError:
        log.warning(NOT_EVALUATED)
        return NOT_EVALUATED

    quant = "4bit" if options.method == "qlora" else "none"
    before = LoadConfig(model=options.base, quant=quant, cache_dir=options.cache_dir, dtype=options.dtype)
    after = LoadConfig(model=meta["load"]["model"], adapter=meta["load"]["adapter"], cache_dir=options.cache_dir,
                       quant=quant if meta["load"]["adapter"] else "none", dtype=options.dtype)
    runs = {}
    for which, config in (("before", before), ("after", after)):
        vlm = load_model(config)
        runs[which] = result = evaluate(vlm, EvalOptions(data=options.data))
        save_result(result, out / EVAL_FILE)
        log.info("held-out scores of %s: %s", result["version"], result["metrics"])
        vlm.release()
    config = json.loads((out / STATE_DIR / "training_config.json").read_text())
    card.write_model_card(out, json.loads((out / VERSION_FILE).read_text()), config, runs)
    return None
