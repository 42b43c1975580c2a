"""HumanVLM's stage two on the reduced real-shape checkpoint: what is trained, and the merged model.

The base is tests/humanvlm_checkpoint.py's checkpoint (HumanVLM's configuration, tokens and
float16 weights, tiny hidden sizes), so `train` applies HumanVLM's own defaults: LoRA r=128,
alpha=256, dropout 0.05 on the language model and the SigLIP tower, projector trained in full.
The merged folder must load with transformers 5 (this app) and with transformers 4.37 (the
first release with LLaVA and SigLIP, in .venv-transformers4 from `make transformers4`), giving
the same next-token logits.
"""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.humanvlm_checkpoint import IMAGE_FEATURES, IMAGE_ID, ensure_checkpoint
from tests.train_support import REPO, approve_shapes, export_to

pytestmark = pytest.mark.slow  # three short trainings of the real-shape model: ~2 min on 2 cores
OLD_PYTHON = REPO / ".venv-transformers4" / "bin" / "python"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A merged LoRA run with the HumanVLM defaults, one with the vision tower left frozen, a merged QLoRA run."""
    from annotate.store import Store
    from train.options import TrainOptions
    from train.trainer import train

    root = tmp_path_factory.mktemp("humanvlm-train")
    store = Store(f"sqlite:///{root / 'studio.db'}", root / "data")
    approve_shapes(store, 12, seed=3)
    data = export_to(store, root / "export", "llava", split=0.8)
    store.close()
    base = str(ensure_checkpoint())
    common = dict(data=str(data), base=base, batch_size=2, grad_accum=1, max_steps=2, lr=1e-3)
    merged = train(TrainOptions(out=str(root / "merged"), merge=True, **common))
    frozen = train(TrainOptions(out=str(root / "frozen"), vision_tower="frozen", **common))
    qlora = train(TrainOptions(out=str(root / "qlora"), method="qlora", merge=True, **(common | {"max_steps": 1})))
    return SimpleNamespace(root=root, base=base, merged=merged, frozen=frozen, qlora=qlora)


def _adapter_keys(folder: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as fh:
        return list(fh.keys())


def test_humanvlm_default_is_its_stage_two_recipe(runs):
    adapter = runs.merged / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (128, 256, 0.05)
    keys = _adapter_keys(adapter)
    vision = {k for k in keys if "vision_tower" in k and "lora_" in k}
    language = {k for k in keys if "language_model" in k and "lora_" in k}
    # Every SigLIP encoder layer's attention and MLP, every Llama layer's linear layers.
    for part in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"):
        assert any(f"{part}.lora_A" in k for k in vision), part
    for part in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"{part}.lora_A" in k for k in language), part
    assert not any("head" in k.split("vision_tower")[-1] for k in vision)  # the unused pooling head
    assert any("multi_modal_projector.linear_1.weight" in k and "lora" not in k for k in keys)  # in full
    assert not any("lm_head" in k or "embed_tokens" in k for k in keys)
    trained = json.loads(next(runs.merged.rglob("training_config.json")).read_text())
    assert trained["vision_lora"] is True and trained["lora_r"] == 128


def test_vision_tower_can_be_left_frozen(runs):
    keys = _adapter_keys(runs.frozen)
    assert not any("vision_tower" in k for k in keys)
    assert any("language_model" in k and "lora_A" in k for k in keys)


def test_merged_model_is_saved_in_the_bases_dtype_and_older_spellings(runs):
    from safetensors import safe_open

    out = runs.merged
    config = json.loads((out / "config.json").read_text())
    assert config["torch_dtype"] == "float16" and config["text_config"]["rope_theta"] == 500000.0
    tokenizer = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer["tokenizer_class"] == "PreTrainedTokenizerFast" and tokenizer["chat_template"]
    assert not {"is_local", "local_files_only"} & set(tokenizer)
    for shard in out.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as fh:
            assert all(fh.get_slice(k).get_dtype() == "F16" for k in fh.keys())
            assert all(k.startswith("vision_tower.vision_model.") for k in fh.keys() if k.startswith("vision_tower"))


def test_merged_qlora_is_a_16bit_model_like_its_base(runs, astronaut):
    from model.generate import GenerationSettings
    from model.loader import LoadConfig, load_model

    config = json.loads((runs.qlora / "config.json").read_text())
    assert config["torch_dtype"] == "float16" and "quantization_config" not in config
    assert any("vision_tower" in k and "lora_A" in k for k in _adapter_keys(runs.qlora / "adapter"))
    vlm = load_model(LoadConfig(model=str(runs.qlora)))
    assert vlm.info.quant == "none"
    assert isinstance(vlm.caption(astronaut, "Describe.", GenerationSettings(max_new_tokens=3)), str)


def test_merged_model_matches_base_plus_adapter(runs, astronaut):
    import torch

    from model.loader import LoadConfig, load_model

    merged = load_model(LoadConfig(model=str(runs.merged), dtype="float32"))
    adapter = load_model(LoadConfig(model=runs.base, adapter=str(runs.merged / "adapter"), dtype="float32"))
    text = merged.prompt_text([("Describe this photo.", None)])
    with torch.no_grad():
        a = merged.model(**merged._inputs([astronaut], [text])).logits[0, -1]
        b = adapter.model(**adapter._inputs([astronaut], [text])).logits[0, -1]
    assert torch.allclose(a, b, atol=2e-2, rtol=0)  # float16 rounding of the merged weights only
    assert not torch.allclose(a, load_model(LoadConfig(model=runs.base, dtype="float32")).model(
        **merged._inputs([astronaut], [text])).logits[0, -1].detach(), atol=1e-3)  # training changed it


@pytest.mark.skipif(not OLD_PYTHON.exists(), reason="no .venv-transformers4: run `make transformers4` (make test does)")
def test_merged_model_loads_with_transformers_4_and_gives_the_same_logits(runs, astronaut, tmp_path):
    import torch

    from model.loader import LoadConfig, load_model

    vlm = load_model(LoadConfig(model=str(runs.merged), dtype="float32"))
    text = vlm.prompt_text([("Describe this photo.", None)])
    inputs = vlm._inputs([astronaut], [text])
    with torch.no_grad():
        ours = vlm.model(**inputs).logits[0, -1]
    image = tmp_path / "photo.png"
    astronaut.save(image)
    proc = subprocess.run([str(OLD_PYTHON), str(REPO / "tests" / "portable_probe.py"), str(runs.merged), str(image),
                           text, str(tmp_path / "logits.pt")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["transformers"].startswith("4.37") and seen["rope_theta"] == 500000.0
    assert seen["tokenizer"] == "PreTrainedTokenizerFast" and seen["chat_template"]
    assert "were not used" not in proc.stderr and "newly initialized" not in proc.stderr
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(IMAGE_ID) == IMAGE_FEATURES
    collapsed = [t for i, t in enumerate(ids) if t != IMAGE_ID or ids[i - 1] != IMAGE_ID]
    assert seen["ids"] == collapsed  # the same tokens, the old version expanding <image> itself
    theirs = torch.load(tmp_path / "logits.pt")
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()


@pytest.fixture(scope="module")
def astronaut():
    from PIL import Image

    from tests.conftest import ASTRONAUT

    return Image.open(ASTRONAUT).convert("RGB")
