"""The offline demo model: built, saved, reloaded through HumanVLM's loading path, generating."""

import json

import pytest
from PIL import Image

from model.demo import IMAGE_TOKEN, build_demo_model, ensure_demo_model
from model.generate import GenerationSettings
from model.loader import LoadConfig, ModelLoadError, load_model, model_version
from model.prompts import CARD, LLAMA3, PRESETS, detect_format, resolve_prompt, UnknownPreset
from tests.conftest import ASTRONAUT

SHORT = GenerationSettings(max_new_tokens=24)


@pytest.fixture(scope="module")
def astronaut():
    return Image.open(ASTRONAUT).convert("RGB")


def test_build_is_small_deterministic_and_huamnvlm_shaped(tmp_path):
    a = build_demo_model(tmp_path / "a")
    b = build_demo_model(tmp_path / "b")
    size = sum(p.stat().st_size for p in a.rglob("*") if p.is_file())
    assert size < 20 * 2**20, f"demo model is {size / 2**20:.1f} MB"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()  # fixed seed
    config = json.loads((a / "config.json").read_text())
    assert config["model_type"] == "llava"
    assert config["vision_config"]["model_type"] == "siglip_vision_model"
    assert config["text_config"]["model_type"] == "llama"
    assert config["projector_hidden_act"] == "gelu"
    assert config["text_config"]["vocab_size"] % 64 == 0
    pre = json.loads((a / "processor_config.json").read_text())
    image_proc = pre.get("image_processor", pre)
    assert image_proc["image_mean"] == [0.5, 0.5, 0.5] and image_proc["image_std"] == [0.5, 0.5, 0.5]


def test_build_never_replaces_a_folder_of_other_files(tmp_path):
    from model.demo import DemoModelError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("keep me")
    with pytest.raises(DemoModelError, match="not a demo model"):
        build_demo_model(mine)
    assert (mine / "thesis.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    again = build_demo_model(build_demo_model(tmp_path / "empty"))  # empty, then an earlier demo model
    assert (again / "config.json").is_file()


def test_loads_through_the_humanvlm_path(demo_vlm):
    info = demo_vlm.info
    assert info.is_demo and info.name == "demo"
    assert info.device == "cpu" and info.dtype == "float32" and info.quant == "none"
    assert info.prompt_format == "llama3"
    assert type(demo_vlm.model).__name__ == "LlavaForConditionalGeneration"
    assert info.version == model_version(str(ensure_demo_model()))
    # Stop ids include <|eot_id|> (id of the Llama-3 end-of-turn token).
    eot = demo_vlm.processor.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert eot in demo_vlm.stop_ids


def test_image_token_count_matches_model(demo_vlm, astronaut):
    batch = demo_vlm.processor(images=[astronaut], text=[demo_vlm.prompt_text([("hi", None)])], return_tensors="pt")
    image_id = demo_vlm.model.config.image_token_id
    assert int((batch["input_ids"] == image_id).sum()) == demo_vlm.model.config.image_seq_length


def test_caption_is_deterministic_when_greedy(demo_vlm, astronaut):
    first = demo_vlm.caption(astronaut, PRESETS["detailed"], SHORT)
    assert first and first == demo_vlm.caption(astronaut, PRESETS["detailed"], SHORT)
    assert IMAGE_TOKEN not in first and "<|eot_id|>" not in first


def test_stream_yields_pieces_that_add_up(demo_vlm, astronaut):
    turns = [(PRESETS["brief"], None)]
    pieces = list(demo_vlm.stream(astronaut, turns, SHORT))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == demo_vlm.generate(astronaut, turns, SHORT)


def test_stream_stops_when_closed_and_joins_worker(demo_vlm, astronaut):
    import threading

    gen = demo_vlm.stream(astronaut, [("describe", None)], GenerationSettings(max_new_tokens=1000))
    next(gen)
    gen.close()  # what a stop button does
    assert not any(t.name == "vlm-generate" for t in threading.enumerate())
    assert demo_vlm._lock.acquire(timeout=1)  # the model is free again
    demo_vlm._lock.release()


def test_stream_raises_worker_errors(demo_vlm, astronaut):
    with pytest.raises(Exception, match="max new tokens"):
        list(demo_vlm.stream(astronaut, [("hi", None)], GenerationSettings(max_new_tokens=0)))


def test_sampling_with_seed_is_reproducible(demo_vlm, astronaut):
    s = GenerationSettings(max_new_tokens=16, temperature=0.9, top_p=0.95, seed=7)
    assert demo_vlm.caption(astronaut, "hi", s) == demo_vlm.caption(astronaut, "hi", s)


def test_batched_captioning_one_per_image(demo_vlm, astronaut):
    small = astronaut.resize((64, 200))
    captions = demo_vlm.caption_batch([astronaut, small, astronaut], PRESETS["brief"], SHORT)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)


def test_llama3_format_renders_exactly():
    text = LLAMA3.render([("Describe.", "A woman.<x>"), ("Her hair?", None)])
    assert text == (
        "<|start_header_id|>user<|end_header_id|>\n\n<image>\nDescribe.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA woman.<x><|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHer hair?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_card_format_renders_exactly():
    assert CARD.render([("Describe.", None)]) == "USER: <image>\nDescribe.\nASSISTANT:"
    assert CARD.render([("Describe.", "A woman."), ("Hair?", None)]) == (
        "USER: <image>\nDescribe.\nASSISTANT: A woman.\nUSER: Hair?\nASSISTANT:")


def test_chat_template_agrees_with_llama3_format(demo_vlm):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    from_template = demo_vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert from_template == "<|begin_of_text|>" + LLAMA3.render([("Describe.", None)])


def test_format_detection_and_override(demo_vlm, tmp_path):
    assert detect_format(demo_vlm.processor.tokenizer) is LLAMA3
    card = load_model(LoadConfig(model="demo", prompt_format="card"))
    assert card.info.prompt_format == "card"
    assert card.stop_ids[0] == card.processor.tokenizer.eos_token_id
    with pytest.raises(ModelLoadError, match="prompt format"):
        load_model(LoadConfig(model="demo", prompt_format="chatml"))


def test_presets_and_free_text():
    assert set(PRESETS) >= {"detailed", "face", "body", "background", "brief"}
    assert "background" in PRESETS["detailed"] and "cloth" in PRESETS["detailed"]
    assert resolve_prompt("face", "  What is she holding? ") == "What is she holding?"
    with pytest.raises(UnknownPreset):
        resolve_prompt("nope")


@pytest.mark.parametrize("quant, layer", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantized_loading_on_cpu(quant, layer, astronaut):
    vlm = load_model(LoadConfig(model="demo", quant=quant))
    kinds = {type(m).__name__ for m in vlm.model.model.language_model.modules()}
    assert layer in kinds
    # The vision tower stays in full precision.
    assert not any(type(m).__name__ == layer for m in vlm.model.model.vision_tower.modules())
    assert vlm.info.quant == quant
    assert isinstance(vlm.caption(astronaut, "hi", GenerationSettings(max_new_tokens=8)), str)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load"):
        load_model(LoadConfig(model=str(tmp_path / "nowhere")))


def test_auto_falls_back_to_demo_with_a_reason():
    vlm = load_model(LoadConfig(model="auto"))
    assert vlm.info.is_demo
    assert "--model OpenFace-CQUPT/Human_LLaVA" in vlm.info.note


def test_generation_stops_on_the_formats_end_token(astronaut):
    """A model whose favourite token is <|eot_id|> answers with nothing, and stops at once."""
    import torch

    vlm = load_model(LoadConfig(model="demo"))
    eot = vlm.processor.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    with torch.no_grad():
        vlm.model.lm_head.weight[eot] = vlm.model.lm_head.weight.abs().max() * 1e3
    inputs = vlm._inputs([astronaut], [vlm.prompt_text([("hi", None)])])
    out = vlm.model.generate(**inputs, **vlm._gen_kwargs(GenerationSettings(max_new_tokens=50)))
    assert out.shape[1] - inputs["input_ids"].shape[1] == 1  # only the end token itself
    assert vlm.caption(astronaut, "hi", GenerationSettings(max_new_tokens=50)) == ""
    assert list(vlm.stream(astronaut, [("hi", None)], GenerationSettings(max_new_tokens=50))) == []


def test_auto_falls_back_to_demo_when_humanvlm_fails_to_load(tmp_path, monkeypatch):
    """Weights half on disk (an interrupted download): `auto` picks HumanVLM, fails, says why."""
    import huggingface_hub.constants as hub

    snapshot = tmp_path / "models--OpenFace-CQUPT--Human_LLaVA" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "llava"}')
    (tmp_path / "models--OpenFace-CQUPT--Human_LLaVA" / "refs").mkdir()
    (tmp_path / "models--OpenFace-CQUPT--Human_LLaVA" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    vlm = load_model(LoadConfig(model="auto"))
    assert vlm.info.is_demo and vlm.info.name == "demo"
    assert vlm.info.note.startswith("HumanVLM was not loaded: ") and "not on disk" not in vlm.info.note
    assert "--model OpenFace-CQUPT/Human_LLaVA" in vlm.info.note
    # Asking for HumanVLM by name is not second-guessed: it fails loudly.
    with pytest.raises(ModelLoadError):
        load_model(LoadConfig(model="OpenFace-CQUPT/Human_LLaVA"))
