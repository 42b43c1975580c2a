"""Caption a split of an export with a model and score it against the reviewers' captions.

Results are appended to an `eval.json` ({"runs": [...]}) next to the model: under the adapter
folder's or the model folder's `training/` (it holds local paths: the training state, not the
model), or (for hub ids) in the export folder, so a version carries its scores.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from train.data import SPLIT_ALIASES, ExportData
from train.errors import DataError
from train.options import DEMO_DEFAULTS, HUMANVLM_DEFAULTS, EvalOptions

EVAL_FILE = "training/eval.json"  # relative to a model or adapter folder
SAMPLES_KEPT = 8  # per run, for a quick look at what the model wrote


def eval_examples(options: EvalOptions) -> tuple[ExportData, list]:
    """The export and its examples to caption; cheap, so callers check them before loading a model."""
    data = ExportData(options.data)
    examples = data.split(options.split)[: options.limit]
    if not examples:
        raise DataError(f"the {options.split} split of {data.folder} has no items with images to evaluate on")
    if options.batch_size < 1:
        raise DataError("--batch-size must be at least 1")
    return data, examples


def evaluate(vlm, options: EvalOptions, progress=None) -> dict:
    """Caption the split with `vlm` (a loaded model.generate.VLM); returns the result record."""
    from model.generate import GenerationSettings
    from model.images import load_image
    from model.prompts import PRESETS
    from train.metrics import caption_metrics
    from train.versions import is_demo_family

    data, examples = eval_examples(options)
    defaults = DEMO_DEFAULTS if is_demo_family(vlm) else HUMANVLM_DEFAULTS
    settings = GenerationSettings(max_new_tokens=options.max_new_tokens or defaults.eval_max_new_tokens)
    began, captions = time.perf_counter(), []
    for start in range(0, len(examples), options.batch_size):
        batch = examples[start:start + options.batch_size]
        images = [load_image(e.image) for e in batch]
        turns = [[(e.prompt or PRESETS["detailed"], None)] for e in batch]
        captions += vlm.generate_batch(images, turns, settings)
        if progress:
            progress(len(captions), len(examples))
    metrics = caption_metrics(captions, [e.answer for e in examples])
    return {
        "model": vlm.info.name, "adapter": vlm.info.adapter, "version": vlm.info.version,
        "split": SPLIT_ALIASES.get(options.split, options.split), "data": str(data.folder), "data_sha256": data.describe()["sha256"],
        "metrics": metrics, "max_new_tokens": settings.max_new_tokens,
        "seconds": round(time.perf_counter() - began, 2),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "samples": [{"id": e.id, "reference": e.answer, "caption": c}
                    for e, c in zip(examples[:SAMPLES_KEPT], captions)],
    }


def default_save_path(vlm, data_dir: str) -> Path:
    """Next to a trained model (its adapter folder, or a local model folder the user gave);
    else in the export folder. Never inside a cache (the demo model's, the hub's)."""
    if vlm.info.adapter:
        return Path(vlm.info.adapter) / EVAL_FILE
    folder = Path(vlm.info.name)
    if folder.is_dir() and not vlm.info.is_demo:
        return folder / EVAL_FILE
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", vlm.info.version)
    return Path(data_dir) / f"eval-{slug}.json"


def save_result(result: dict, path: str | Path) -> Path:
    """Append the run to the file's `runs` list (written atomically)."""
    from train.progress import write_json_atomic

    path = Path(path)
    runs = load_runs(path)
    runs.append(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"runs": runs})
    return path


def load_runs(path: str | Path) -> list[dict]:
    try:
        return list(json.loads(Path(path).read_text()).get("runs", []))
    except (OSError, ValueError, AttributeError):
        return []


def latest_run(path: str | Path, version: str | None = None, split: str = "heldout") -> dict | None:
    """The newest run of a version (any version when None) on a split."""
    for run in reversed(load_runs(path)):
        if run.get("split") == split and (version is None or run.get("version") == version):
            return run
    return None
