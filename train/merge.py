"""`train --merge`: fold the trained LoRA weights into the base and save one whole model.

One copy of the model in memory, never two:

- LoRA on an unquantized base: the trained model already holds the base's weights, so the
  LoRA deltas are added to them in place (`merge_and_unload`), and the model is cast, still in
  place, to the dtype the base was saved in (HumanVLM: float16, docs/humanvlm.md) before
  being written in shards.
- QLoRA: 4-bit weights cannot take the deltas without another rounding, so the base is loaded
  once in its saved 16-bit dtype, the adapter applied and merged in place; the 4-bit trained
  model alongside it is a quarter of that size.

The folder is then made readable by older readers too (train/portable.py).
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

from train.portable import make_portable

log = logging.getLogger(__name__)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md")
MAX_SHARD = "5GB"  # HumanVLM itself ships 4 shards of ~5 GB


def merge_into(out: Path, options, vlm, trained) -> dict:
    """Merge `trained` (the PeftModel) into its base and save it in OUT; the adapter goes to OUT/adapter.

    Returns the dtype written and the process's peak resident memory so far (MB)."""
    return save_merged(out, options.base, vlm, trained, _move_adapter(out), options.cache_dir)


def save_merged(out: Path, base: str, vlm, trained, adapter_dir: Path, cache_dir: str | None = None) -> dict:
    """Merge `trained` (a PeftModel over `vlm`'s weights, its adapter in `adapter_dir`) into `base`
    and save the whole model in OUT (also used by the Models tab's Merge, train/manage.py)."""
    import torch

    dtype = base_dtype(base, vlm)
    if vlm.info.quant == "none":
        merged = trained.merge_and_unload()  # in place: LoRA layers replaced by their merged Linear
    else:
        merged = _merge_from_16bit(base, cache_dir, dtype, adapter_dir)
    merged.to(getattr(torch, dtype))  # in place, module by module
    merged.save_pretrained(str(out), max_shard_size=MAX_SHARD)
    vlm.processor.save_pretrained(str(out))
    make_portable(out)
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    log.info("merged the adapter into %s (%s, peak RSS %.0f MB)", out, dtype, peak)
    return {"dtype": dtype, "peak_rss_mb": peak}


def base_dtype(base: str, vlm) -> str:
    """The dtype the base checkpoint was saved in; the loaded dtype when the checkpoint does not say."""
    from model.loader import resolve_model, LoadConfig
    from model.memory import checkpoint_size

    folder = base if Path(base).is_dir() else resolve_model(LoadConfig(model=base))[0]
    size = checkpoint_size(folder)
    saved = size.saved_dtype if size else None
    if saved in ("float32", "float16", "bfloat16"):
        return saved
    return vlm.info.dtype if vlm.info.quant == "none" else "bfloat16"


def _move_adapter(out: Path) -> Path:
    adapter_dir = out / "adapter"
    adapter_dir.mkdir(exist_ok=True)
    for name in ADAPTER_FILES:
        if (out / name).exists():
            (out / name).replace(adapter_dir / name)
    return adapter_dir


def _merge_from_16bit(base: str, cache_dir: str | None, dtype: str, adapter_dir: Path):
    from peft import PeftModel

    from model.loader import LoadConfig, load_model

    loaded = load_model(LoadConfig(model=base, device="cpu", dtype=dtype, quant="none", cache_dir=cache_dir))
    return PeftModel.from_pretrained(loaded.model, str(adapter_dir)).merge_and_unload()
