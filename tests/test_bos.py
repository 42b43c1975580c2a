"""Exactly one BOS token in every prompt the model sees: caption, chat, batch (left-padded),
streaming and training, in both prompt formats, with the demo model and with a tokenizer
configured like HumanVLM's (the reduced real-shape checkpoint: Llama-3's ids, a chat template
that adds BOS itself). The ids are read where they enter the model, not recomputed."""

import pytest

from model.generate import GenerationSettings
from model.loader import LoadConfig, load_model
from tests.conftest import ASTRONAUT
from tests.humanvlm_checkpoint import ensure_checkpoint

SETTINGS = GenerationSettings(max_new_tokens=2)


@pytest.fixture(scope="module", params=[("demo", "llama3"), ("demo", "card"), ("humanvlm", "llama3"),
                                        ("humanvlm", "card")], ids=lambda p: "-".join(p))
def vlm(request):
    model, fmt = request.param
    source = "demo" if model == "demo" else str(ensure_checkpoint())
    loaded = load_model(LoadConfig(model=source, prompt_format=fmt))
    assert loaded.processor.tokenizer.bos_token_id is not None  # both tokenizers have one to double
    yield loaded
    loaded.release()


@pytest.fixture(scope="module")
def photo():
    from PIL import Image

    return Image.open(ASTRONAUT).convert("RGB")


def _fed_ids(vlm, run) -> list[list[int]]:
    """The prompt ids of each row at the model's first forward call while `run()` generates."""
    seen = []

    def hook(module, args, kwargs):
        if not seen:
            seen.append(kwargs["input_ids"].tolist())

    handle = vlm.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


def _bos_count(vlm, ids: list[int]) -> int:
    return ids.count(vlm.processor.tokenizer.bos_token_id)


def test_caption_chat_and_stream(vlm, photo):
    runs = {
        "caption": lambda: vlm.caption(photo, "Describe her.", SETTINGS),
        "chat": lambda: vlm.generate(photo, [("Describe her.", "A woman."), ("Her hair?", None)], SETTINGS),
        "stream": lambda: "".join(vlm.stream(photo, [("Describe her.", None)], SETTINGS)),
    }
    for name, run in runs.items():
        (ids,) = _fed_ids(vlm, run)
        assert _bos_count(vlm, ids) == 1, name
        assert ids[0] == vlm.processor.tokenizer.bos_token_id, name  # and it comes first


def test_a_left_padded_batch(vlm, photo):
    tok = vlm.processor.tokenizer
    rows = _fed_ids(vlm, lambda: vlm.generate_batch(
        [photo, photo, photo], [[("Hi.", None)], [("Describe her face in a few more words.", None)],
                                [("Describe her.", "A woman."), ("And?", None)]], SETTINGS))
    assert len(rows) == 3
    for ids in rows:
        content = ids[next(i for i, t in enumerate(ids) if t != tok.pad_token_id):]  # after the left padding
        assert _bos_count(vlm, ids) == 1 and content[0] == tok.bos_token_id


def test_training_rows_as_the_collator_builds_them(vlm, photo, tmp_path):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from train.data import Example, to_dataset

    path = tmp_path / "photo.png"
    photo.save(path)
    examples = [Example(str(i), path, None, "Describe her.", answer, "train")
                for i, answer in enumerate(["A woman in a suit.", "An astronaut smiling at the camera."])]
    dataset = to_dataset(examples, vlm, "Describe her.")
    batch = DataCollatorForVisionLanguageModeling(vlm.processor, completion_only_loss=True)(
        [dataset[i] for i in range(len(dataset))])
    for ids in batch["input_ids"].tolist():
        assert _bos_count(vlm, ids) == 1
