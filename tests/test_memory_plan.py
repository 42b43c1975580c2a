"""Precision chosen from the checkpoint's size and the memory at hand, before loading.

The sizes are read from real files: the reduced real-shape HumanVLM checkpoint's safetensors
headers, and a HumanVLM-sized safetensors index (17 GB of float16, no weights behind it) in a
local folder and in the hub cache. GPU memory is simulated with a budget (`--memory-budget`).
"""

import json
import logging

import pytest

from model.loader import HUMANVLM_ID, LoadConfig, ModelLoadError, load_model, plan_memory
from model.memory import NotEnoughMemory, checkpoint_size, parse_budget, plan
from tests.humanvlm_checkpoint import ensure_checkpoint

HUMANVLM_BYTES = 17_030_000_000  # float16, 4 shards (docs/humanvlm.md)


def _humanvlm_index(folder):
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((ensure_checkpoint() / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"torch_dtype": "float16"}))
    weight_map = {f"layer.{i}": f"model-0000{i % 4 + 1}-of-00004.safetensors" for i in range(8)}
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": HUMANVLM_BYTES}, "weight_map": weight_map}))
    return folder


@pytest.fixture(scope="module")
def reduced():
    return ensure_checkpoint()


def test_size_is_read_from_local_safetensors_headers(reduced):
    vlm = load_model(LoadConfig(model=str(reduced)))
    size = checkpoint_size(str(reduced))
    assert size.parameters == sum(p.numel() for p in vlm.model.parameters())
    assert size.saved_dtype == "float16" and size.source == "safetensors headers"


def test_size_is_read_from_an_index_in_a_folder_and_in_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    local = checkpoint_size(str(_humanvlm_index(tmp_path / "Human_LLaVA")))
    assert local.source == "safetensors index" and 8.4e9 < local.parameters < 8.6e9
    snapshot = tmp_path / "hub" / "models--OpenFace-CQUPT--Human_LLaVA" / "snapshots" / ("0" * 40)
    _humanvlm_index(snapshot)
    (tmp_path / "hub" / "models--OpenFace-CQUPT--Human_LLaVA" / "refs").mkdir()
    (tmp_path / "hub" / "models--OpenFace-CQUPT--Human_LLaVA" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert checkpoint_size(HUMANVLM_ID).parameters == local.parameters


def test_sharded_checkpoint_and_a_half_downloaded_one(tmp_path, reduced):
    from tests.humanvlm_checkpoint import build_checkpoint

    folder = build_checkpoint(tmp_path / "sharded", max_shard_size="10MB")
    shards = sorted(folder.glob("*.safetensors"))
    assert len(shards) > 2
    whole = checkpoint_size(str(folder))
    assert whole.source == "safetensors headers" and whole.parameters == checkpoint_size(str(reduced)).parameters
    shards[-1].unlink()  # an interrupted download: the index still knows the total
    half = checkpoint_size(str(folder))
    assert half.source == "safetensors index" and abs(half.parameters - whole.parameters) < 0.01 * whole.parameters


def test_small_gpu_gets_4bit_from_a_local_folder(reduced):
    size = checkpoint_size(str(reduced))
    fp16 = size.parameters * 2
    roomy = plan_memory(LoadConfig(model=str(reduced), memory_budget=f"{fp16 * 2}B"), str(reduced), "cuda")
    assert (roomy.dtype, roomy.quant) == ("float16", "none")  # the checkpoint's saved dtype
    small = plan_memory(LoadConfig(model=str(reduced), memory_budget=f"{fp16}B"), str(reduced), "cuda")
    assert small.quant == "4bit" and small.reason.startswith("4-bit nf4") and "in 16-bit" in small.reason
    with pytest.raises(ModelLoadError, match="GPU memory"):
        plan_memory(LoadConfig(model=str(reduced), memory_budget=f"{fp16 // 8}B"), str(reduced), "cuda")


@pytest.mark.parametrize("device, budget, expected", [
    ("cuda", "80GB", ("float16", "none")),
    ("cuda", "24GB", ("float16", "none")),
    ("cuda", "16GB", ("float16", "4bit")),
    ("cuda", "8GB", ("float16", "4bit")),
    ("cpu", "64GB", ("float32", "none")),
    ("cpu", "24GB", ("bfloat16", "none")),
])
def test_humanvlm_sized_choices(tmp_path, device, budget, expected):
    size = checkpoint_size(str(_humanvlm_index(tmp_path / "m")))
    chosen = plan(device, "auto", "auto", size, parse_budget(budget))
    assert (chosen.dtype, chosen.quant) == expected
    assert chosen.reason  # always says what was decided


@pytest.mark.parametrize("device, budget, dtype, quant, words", [
    ("cuda", "4GB", "auto", "auto", "GPU memory in 4bit"),
    ("cpu", "16GB", "auto", "auto", "RAM in bfloat16"),
    ("cpu", "24GB", "float32", "auto", "try --dtype bfloat16"),
    ("cuda", "16GB", "float16", "none", "try --quant 4bit"),
])
def test_humanvlm_that_cannot_fit_is_refused_with_a_reason(tmp_path, device, budget, dtype, quant, words):
    size = checkpoint_size(str(_humanvlm_index(tmp_path / "m")))
    with pytest.raises(NotEnoughMemory, match=words):
        plan(device, dtype, quant, size, parse_budget(budget))


def test_bf16_checkpoint_on_a_gpu_without_bf16_loads_in_fp16(tmp_path):
    size = checkpoint_size(str(_humanvlm_index(tmp_path / "m")))
    from dataclasses import replace

    assert plan("cuda", "auto", "auto", replace(size, saved_dtype="bfloat16"), 40 * 10**9, bf16_ok=False).dtype == "float16"


def test_cpu_short_of_ram_loads_bf16_or_refuses_before_loading(reduced):
    fp32 = checkpoint_size(str(reduced)).parameters * 4
    vlm = load_model(LoadConfig(model=str(reduced), memory_budget=f"{int(fp32 * 0.8)}B"))
    assert vlm.info.dtype == "bfloat16" and "float32 would need" in vlm.info.decision
    assert vlm.info.decision in vlm.info.describe()
    with pytest.raises(ModelLoadError, match="RAM in bfloat16.*--model demo"):
        load_model(LoadConfig(model=str(reduced), memory_budget=f"{fp32 // 8}B"))
    with pytest.raises(ModelLoadError, match="--memory-budget"):
        load_model(LoadConfig(model=str(reduced), memory_budget="lots"))


def test_auto_on_a_small_cpu_serves_the_demo_and_says_why(tmp_path, monkeypatch):
    """HumanVLM's weights in the hub cache, no GPU, 16 GB of RAM: the demo, before any loading."""
    import huggingface_hub.constants as hub

    snapshot = tmp_path / "models--OpenFace-CQUPT--Human_LLaVA" / "snapshots" / ("0" * 40)
    _humanvlm_index(snapshot)
    (tmp_path / "models--OpenFace-CQUPT--Human_LLaVA" / "refs").mkdir()
    (tmp_path / "models--OpenFace-CQUPT--Human_LLaVA" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    vlm = load_model(LoadConfig(model="auto", memory_budget="16GB"))
    assert vlm.info.is_demo
    assert "GB of RAM in bfloat16, 16.0 GB available" in vlm.info.note
    assert "not loaded" in vlm.info.note


def test_8bit_says_its_cast_warning_once(astronaut_image, caplog):
    from model.generate import GenerationSettings

    vlm = load_model(LoadConfig(model="demo", quant="8bit"))
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            vlm.caption(astronaut_image, "hi", GenerationSettings(max_new_tokens=6))
    casts = [r for r in caplog.records if "MatMul8bitLt" in r.getMessage()]
    assert len(casts) <= 1


@pytest.fixture(scope="module")
def astronaut_image():
    from PIL import Image

    from tests.conftest import ASTRONAUT

    return Image.open(ASTRONAUT).convert("RGB")
