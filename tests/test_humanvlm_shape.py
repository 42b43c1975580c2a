"""The serving path on a checkpoint with HumanVLM's exact configuration (tests/humanvlm_checkpoint.py).

What a GPU user of the real release would hit, minus the size: the Llama-3 prompt picked from
the tokenizer, one BOS, 728 image placeholders, a processor aligned without the hub's missing
processor_config.json, and generation that stops on `<|eot_id|>` although the generation
config's eos is 128001.
"""

import json

import pytest

from model.generate import GenerationSettings
from model.loader import LoadConfig, load_model
from tests.humanvlm_checkpoint import BOS_ID, EOS_TEXT_ID, EOT_ID, IMAGE_FEATURES, IMAGE_ID, PAD_ID, ensure_checkpoint


@pytest.fixture(scope="module")
def folder():
    return ensure_checkpoint()


@pytest.fixture(scope="module")
def vlm(folder):
    return load_model(LoadConfig(model=str(folder)))


@pytest.fixture(scope="module")
def astronaut():
    from PIL import Image

    from tests.conftest import ASTRONAUT

    return Image.open(ASTRONAUT).convert("RGB")


def test_checkpoint_has_humanvlms_configuration(folder):
    config = json.loads((folder / "config.json").read_text())
    assert (config["image_token_index"], config["pad_token_id"]) == (IMAGE_ID, PAD_ID)
    assert config["vision_feature_layer"] == -2 and config["vision_feature_select_strategy"] == "default"
    assert config["text_config"]["vocab_size"] == 128320 and config["text_config"]["num_key_value_heads"] == 8
    assert (config["vision_config"]["image_size"], config["vision_config"]["patch_size"]) == (384, 14)
    assert not (folder / "processor_config.json").exists() and not (folder / "chat_template.json").exists()
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == EOS_TEXT_ID


def test_prompt_has_one_bos_and_728_image_features(vlm, astronaut):
    assert vlm.info.prompt_format == "llama3" and vlm.model.config.text_config.rope_parameters["rope_theta"] == 500000
    ids = vlm._inputs([astronaut], [vlm.prompt_text([("Describe this photo.", None)])])["input_ids"][0].tolist()
    assert ids.count(BOS_ID) == 1 and ids[0] == BOS_ID
    assert ids.count(IMAGE_ID) == IMAGE_FEATURES
    assert ids.count(EOT_ID) == 1  # the user's turn ends; the assistant's is open
    assert vlm.processor.tokenizer.decode(ids).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_generation_stops_on_eot_although_the_generation_eos_is_128001(vlm, astronaut):
    """The model (forced by a logits processor) says <|eot_id|> as its third token: generation
    ends there, and the answer is the two tokens before it."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class EotThird(LogitsProcessor):
        def __init__(self, prompt_length):
            self.prompt_length = prompt_length

        def __call__(self, input_ids, scores):
            if input_ids.shape[1] - self.prompt_length == 2:
                scores = torch.full_like(scores, -1e9)
                scores[:, EOT_ID] = 0
            return scores

    assert vlm.model.generation_config.eos_token_id == EOS_TEXT_ID
    assert EOT_ID in vlm.stop_ids and EOS_TEXT_ID in vlm.stop_ids
    inputs = vlm._inputs([astronaut], [vlm.prompt_text([("hi", None)])])
    length = inputs["input_ids"].shape[1]
    kwargs = vlm._gen_kwargs(GenerationSettings(max_new_tokens=20))
    out = vlm.model.generate(**inputs, **kwargs, logits_processor=LogitsProcessorList([EotThird(length)]))
    assert out[0, length:].tolist()[2:] == [EOT_ID]


def test_stream_and_batch(vlm, astronaut):
    settings = GenerationSettings(max_new_tokens=6)
    assert isinstance("".join(vlm.stream(astronaut, [("Describe.", None)], settings)), str)
    assert len(vlm.caption_batch([astronaut, astronaut.rotate(90)], "Describe.", settings)) == 2


def test_4bit_on_the_real_shape(folder, astronaut):
    vlm = load_model(LoadConfig(model=str(folder), quant="4bit"))
    kinds = {type(m).__name__ for m in vlm.model.model.language_model.modules()}
    assert "Linear4bit" in kinds and vlm.info.quant == "4bit"
    assert isinstance(vlm.caption(astronaut, "hi", GenerationSettings(max_new_tokens=4)), str)
