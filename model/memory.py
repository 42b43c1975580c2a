"""Will the checkpoint fit? Its size, the memory free for it, and the precision that fits.

Decided before a single weight is loaded, so that a 17 GB HumanVLM never starts loading into a
16 GB GPU (or 34 GB of float32 into a laptop's RAM) only to be killed half way:

- the size comes from the checkpoint itself: the headers of local safetensors files (exact
  parameter counts), else the safetensors index's `total_size` (a local folder or the hub
  cache), else the hub's metadata when the hub is reachable;
- the memory is the GPU's free memory on CUDA and the available RAM on a CPU, or a budget the
  user (or a test) gives with `--memory-budget`;
- `auto` dtype follows the checkpoint's saved `torch_dtype` on a GPU (HumanVLM: float16,
  docs/humanvlm.md), float32 on a CPU when it fits, else bfloat16; `auto` quantization is 4-bit
  nf4 on a GPU too small for 16-bit weights. What was decided, and why, is one line for the user.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GB = 1e9
# Weights are not the whole story: activations, the KV cache and the CUDA context need room too.
HEADROOM = 1.2
# Bytes per parameter, all in: 4-bit nf4 with double quantization, the vision tower, projector
# and lm_head kept in 16-bit (HumanVLM: ~5.5-6 GB for 8.5 B parameters, docs/humanvlm.md).
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.15, "4bit": 0.7}
SAFETENSORS_ITEM = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


class NotEnoughMemory(RuntimeError):
    """The checkpoint cannot fit in any precision allowed here (raised before loading)."""

    user_facing = True


@dataclass(frozen=True)
class CheckpointSize:
    parameters: int
    saved_dtype: str | None  # the config's torch_dtype, e.g. "float16"
    source: str  # where the size was read, for the log

    def gigabytes(self, precision: str) -> float:
        return self.parameters * BYTES_PER_PARAM[precision] / GB


@dataclass(frozen=True)
class Plan:
    dtype: str  # torch dtype name
    quant: str  # none | 4bit | 8bit
    reason: str  # what was decided and why, one line ("" when nothing needed deciding)


# ---- reading the checkpoint -------------------------------------------------------------------


def checkpoint_size(model_id: str) -> CheckpointSize | None:
    """Parameters and saved dtype of a local folder or hub id, or None when nothing says."""
    folder = Path(model_id)
    if not folder.is_dir():
        folder = _hub_snapshot(model_id)
    config = _read_json(folder / "config.json") if folder else None
    dtype = _saved_dtype(config) if config else None
    if folder is not None:
        index = _read_json(folder / "model.safetensors.index.json")
        names = sorted(set((index or {}).get("weight_map", {}).values())) or ["model.safetensors"]
        shards = [folder / name for name in names]
        if all(p.is_file() for p in shards):  # every shard on disk (a download may be half done)
            return CheckpointSize(sum(_header_parameters(p) for p in shards), dtype, "safetensors headers")
        total = (index or {}).get("metadata", {}).get("total_size")
        if total:
            return CheckpointSize(int(total / BYTES_PER_PARAM.get(dtype or "float16", 2.0)), dtype, "safetensors index")
    if folder is None or not Path(model_id).is_dir():
        return _hub_metadata(model_id, dtype)
    return None


def _header_parameters(path: Path) -> int:
    """Parameter count from a safetensors header (8-byte length, then JSON): no tensor is read."""
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    count = 0
    for name, info in header.items():
        if name != "__metadata__":
            numel = 1
            for dim in info["shape"]:
                numel *= dim
            count += numel
    return count


def _saved_dtype(config: dict) -> str | None:
    for source in (config, config.get("text_config") or {}):
        value = source.get("torch_dtype") or source.get("dtype")
        if isinstance(value, str):
            return value.removeprefix("torch.")
    return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _hub_snapshot(model_id: str) -> Path | None:
    """The hub cache's snapshot folder of `model_id`, if its config is on disk."""
    if "/" not in model_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except ValueError:  # not a valid repo id (a path that does not exist): nothing cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def _hub_metadata(model_id: str, dtype: str | None) -> CheckpointSize | None:
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE") == "1" or "/" not in model_id:
        return None
    try:
        from huggingface_hub import get_safetensors_metadata

        meta = get_safetensors_metadata(model_id)
    except Exception as exc:  # hub unreachable, no safetensors: the size stays unknown (logged)
        log.info("could not read the size of %s from the hub: %s", model_id, exc)
        return None
    return CheckpointSize(sum(meta.parameter_count.values()), dtype, "hub metadata")


# ---- memory -----------------------------------------------------------------------------------


def parse_budget(text: str) -> int:
    """'16GB', '15.5 GiB', '800MB' -> bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*((?:[KMGT]i?)?B?)\s*", text or "", re.IGNORECASE)
    if not match:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 16GB or 800MB)")
    unit = (match[2] or "B").upper().rstrip("B") or "B"
    scale = {"B": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
    return int(float(match[1]) * scale[unit])


def free_memory(device: str, budget: str | None = None) -> int | None:
    """Bytes free for the weights: the budget when given, else the device's free memory."""
    if budget:
        return parse_budget(budget)
    if device.startswith("cuda"):
        import torch

        from model.zerogpu import on_zerogpu

        if on_zerogpu():  # no GPU in this process (spaces patches the properties): a call gets a whole slice
            return torch.cuda.get_device_properties(0).total_memory
        return torch.cuda.mem_get_info(torch.device(device))[0]
    if device == "cpu":
        import psutil

        return psutil.virtual_memory().available
    return None  # mps and others: nothing reliable to ask


# ---- the decision -----------------------------------------------------------------------------


def plan(device: str, dtype: str, quant: str, size: CheckpointSize | None, free: int | None,
         bf16_ok: bool = True) -> Plan:
    """The dtype and quantization to load with; `dtype`/`quant` are the user's (or "auto")."""
    gpu = device.startswith("cuda")
    chosen = dtype == "auto" or quant == "auto"
    if dtype == "auto":
        dtype = _auto_dtype(gpu, size, free, bf16_ok)
    if quant == "auto":
        quant = "none" if not gpu else _auto_quant(size, dtype, free)
    if size is not None and free is not None:
        need = size.gigabytes(dtype if quant == "none" else quant)
        # What was chosen here keeps the headroom; what the user asked for is refused only
        # when the weights alone cannot fit.
        if need * (HEADROOM if chosen else 1.0) * GB > free:
            raise NotEnoughMemory(_too_big(gpu, dtype, quant, need, free))
    return Plan(dtype, quant, _explain(gpu, dtype, quant, size, free))


def _auto_dtype(gpu: bool, size: CheckpointSize | None, free: int | None, bf16_ok: bool) -> str:
    saved = size.saved_dtype if size else None
    if gpu:
        if saved == "float16" or (saved == "bfloat16" and bf16_ok):
            return saved
        return "bfloat16" if bf16_ok else "float16"
    if size is None or free is None or size.gigabytes("float32") * HEADROOM * GB <= free:
        return "float32"  # CPUs compute half precision slowly: full precision whenever it fits
    return "bfloat16"


def _auto_quant(size: CheckpointSize | None, dtype: str, free: int | None) -> str:
    if size is None or free is None:
        return "none"
    if dtype in ("float32",) or size.gigabytes(dtype) * HEADROOM * GB <= free:
        return "none"
    return "4bit"


def _size(gigabytes: float) -> str:
    return f"{gigabytes:.1f} GB" if gigabytes >= 1 else f"{gigabytes * 1000:.0f} MB"


def _explain(gpu: bool, dtype: str, quant: str, size: CheckpointSize | None, free: int | None) -> str:
    if size is None or free is None:
        return ""
    where = "GPU memory free" if gpu else "RAM available"
    have = f"{_size(free / GB)} of {where}"
    params = f"{size.parameters / 1e9:.2f} B parameters"
    if quant == "4bit" and gpu:
        return (f"4-bit nf4 ({_size(size.gigabytes(quant))}): {params} need "
                f"{_size(size.gigabytes(dtype))} in 16-bit, {have}")
    if not gpu and dtype != "float32":
        return (f"{dtype} on the CPU ({_size(size.gigabytes(dtype))}): float32 would need "
                f"{_size(size.gigabytes('float32'))}, {have}")
    return f"{dtype} ({_size(size.gigabytes(dtype if quant == 'none' else quant))} for {params}), {have}"


def _too_big(gpu: bool, dtype: str, quant: str, need: float, free: int) -> str:
    what = f"{dtype}" if quant == "none" else f"{quant}"
    if gpu:
        hint = "try --quant 4bit, a larger GPU, or --model demo" if quant != "4bit" else "use a larger GPU or --model demo"
        return f"the model needs {_size(need)} of GPU memory in {what}, {_size(free / GB)} free: {hint}"
    hint = "use a GPU (--device cuda), a machine with more memory, or --model demo"
    if dtype == "float32":
        hint = "try --dtype bfloat16, " + hint
    return f"the model needs {_size(need)} of RAM in {what}, {_size(free / GB)} available: {hint}"
