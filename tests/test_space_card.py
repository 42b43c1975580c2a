"""The README's front matter is a working Hugging Face Space configuration: parsed by
huggingface_hub as the Hub parses it, every key one the Spaces configuration reference defines,
the values ZeroGPU and the product need, and the code parses as the Python it names."""

import ast
import re

from huggingface_hub import SpaceCard, SpaceHardware

from model.loader import HUMANVLM_ID
from tests.conftest import REPO

# https://huggingface.co/docs/hub/spaces-config-reference
KNOWN_KEYS = {
    "title", "emoji", "colorFrom", "colorTo", "sdk", "python_version", "sdk_version", "suggested_hardware",
    "suggested_storage", "app_file", "app_port", "base_path", "fullWidth", "header", "short_description",
    "models", "datasets", "tags", "thumbnail", "pinned", "hf_oauth", "hf_oauth_scopes",
    "hf_oauth_expiration_minutes", "hf_oauth_authorized_org", "disable_embedding", "startup_duration_timeout",
    "custom_headers", "preload_from_hub", "license",
}
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
ZEROGPU_PYTHONS = {"3.10", "3.10.13", "3.12", "3.12.12"}  # what the ZeroGPU documentation lists
DATASETS = {"OpenFace-CQUPT/HumanCaption-HQ-311K", "OpenFace-CQUPT/HumanCaption-10M"}


def _card() -> dict:
    return SpaceCard.load(REPO / "README.md").data.to_dict()


def test_front_matter_keys_are_the_hubs():
    card = _card()
    assert set(card) <= KNOWN_KEYS, set(card) - KNOWN_KEYS
    assert card["sdk"] == "gradio" and (REPO / card["app_file"]).is_file()
    pinned = re.search(r"^gradio(?:\[[\w,]+\])?==([\d.]+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert card["sdk_version"] == pinned
    assert {card["colorFrom"], card["colorTo"]} <= COLORS


def test_front_matter_serves_zerogpu_sign_in_and_the_model():
    card = _card()
    assert str(card["python_version"]) in ZEROGPU_PYTHONS
    assert card["suggested_hardware"] in {h.value for h in SpaceHardware}
    assert card["hf_oauth"] is True
    assert 0 < len(card["short_description"]) <= 60
    assert HUMANVLM_ID in card["models"] and DATASETS <= set(card["datasets"])
    # Baked into the image at build time, so a cold start does not download 17 GB.
    assert [entry.split()[0] for entry in card["preload_from_hub"]] == [HUMANVLM_ID]
    assert re.fullmatch(r"[a-z0-9.\-]+", card["license"])


def test_the_code_parses_as_the_oldest_python_the_space_may_run():
    sources = [p for d in ("app", "annotate", "model", "train", "tests") for p in (REPO / d).rglob("*.py")]
    sources.append(REPO / "app.py")
    for path in sources:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
