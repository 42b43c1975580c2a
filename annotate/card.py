"""What makes an export folder readable as it is by other tools.

- `README.md`: a Hugging Face dataset card (huggingface_hub's `DatasetCard`). Its YAML maps the
  splits to their files (`configs:`), so `datasets.load_dataset(folder)` gives `train` and `test`
  with every row (without it, `datasets` would guess from the most common file type: the images);
  plus licence, task tags, the columns, counts, how faces were handled and the provenance.
- `dataset_info.json` (LLaVA exports): LLaMA-Factory's dataset registry, so
  `llamafactory-cli train --dataset_dir EXPORT --dataset humanvlm_corrections` reads it as is
  (sharegpt formatting, `conversations` / `image` columns, relative image paths).
- `hf_features`: the `datasets` features stored in the parquet schema (key `huggingface`), so the
  `image` column decodes to a PIL image.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from pathlib import Path

import pyarrow as pa

# Licences of rows imported from HumanCaption-HQ / 10M with none recorded: the datasets' own.
HUMANCAPTION_SOURCES = ("HumanCaption-HQ", "HumanCaption-10M")
HUMANCAPTION_LICENCE = "cc-by-4.0"
# Hub licence identifiers the card may use as they are; anything else is `other` (named in the body).
HUB_LICENCES = {"cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc0-1.0", "cc-by-2.0",
                "cc-by-3.0", "apache-2.0", "mit", "odc-by", "pddl", "other", "unknown"}
LLAMAFACTORY_NAME = "humanvlm_corrections"
TAGS = ["human-centric", "image-captioning", "humanvlm", "reviewed-captions", "humanvlm-studio"]
COLUMNS = {
    "url": "the photo's source URL, when it came from one (null for uploaded photos)",
    "image": "the photo (PNG or JPEG bytes embedded, re-encoded without EXIF/GPS; `path` names the "
             "same file under images/); null when only the URL is known",
    "human_caption_hq": "LLaVA turns as in HumanCaption-HQ: the human prompt (`<image>\\n...`) and the "
                        "reviewed caption as the `gpt` turn",
    "face, body, action, background": "the reviewer's structured notes (null when not filled)",
    "item_id": "the review-queue item id",
    "image_sha256": "the queue's identity of the photo (sha256 of the stored file, or of the URL)",
    "model_name, model_version": "the model (or imported dataset) that wrote the draft caption",
    "reviewer": "who approved it", "edit_rate": "share of the draft the reviewer changed (0-1)",
    "licence": "the licence recorded with the photo (null: none recorded)",
    "split": "`train` or `test`, by image hash (see the manifest)",
}
LLAVA_COLUMNS = {
    "id": "the review-queue item id",
    "image": "relative path of the photo under images/ (re-encoded without EXIF/GPS)",
    "image_sha256": "the queue's identity of the photo",
    "conversations": "LLaVA turns: the human prompt (`<image>\\n...`) and the reviewed caption (`gpt`)",
}


def effective_licence(licence: str | None, model_name: str | None) -> str | None:
    """The licence a row is shared under: the recorded one, else HumanCaption's for its rows."""
    if licence:
        return licence
    return HUMANCAPTION_LICENCE if model_name in HUMANCAPTION_SOURCES else None


def hf_features(schema: pa.Schema, image_columns: tuple[str, ...] = ("image",)) -> dict:
    """`datasets` feature dict of an arrow schema, with `image_columns` as Image features."""

    def feature(name: str, kind: pa.DataType) -> dict:
        if name in image_columns:
            return {"_type": "Image"}
        if pa.types.is_list(kind):
            return {"feature": feature("", kind.value_type), "_type": "List"}
        if pa.types.is_struct(kind):
            return {kind.field(i).name: feature("", kind.field(i).type) for i in range(kind.num_fields)}
        return {"dtype": {"double": "float64"}.get(str(kind), str(kind)), "_type": "Value"}

    return {f.name: feature(f.name, f.type) for f in schema}


def with_hf_features(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": hf_features(schema)}})})


def app_version() -> str:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    except (OSError, KeyError, ValueError):
        return "unknown"


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def write_card(folder: Path, result, files: dict[str, str], status: str, split: float) -> Path:
    """README.md: the dataset card of the export in `folder` (files: split -> file name)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    licences: Counter = result.licences
    names = sorted(licences, key=lambda k: (k is None, str(k)))
    single = names[0] if len(names) == 1 else None
    licence = single if single in HUB_LICENCES else "other"
    total = sum(result.counts.values())
    data = DatasetCardData(
        license=licence, language=["en"], task_categories=["image-to-text"], tags=TAGS,
        size_categories=[size_category(total)], pretty_name="HumanVLM Studio reviewed captions",
        configs=[{"config_name": "default",
                  "data_files": [{"split": name, "path": path} for name, path in files.items()]}],
    )
    content = f"---\n{data.to_yaml()}\n---\n{_body(result, files, status, split, licences)}"
    path = folder / "README.md"
    DatasetCard(content).save(path)
    return path


def _body(result, files: dict[str, str], status: str, split: float, licences: Counter) -> str:
    columns = COLUMNS if result.format == "humancaptionhq" else LLAVA_COLUMNS
    lines = [
        "# HumanVLM Studio: reviewed captions of photos of people", "",
        f"Captions of photos of people, drafted by a model and corrected by reviewers in HumanVLM Studio "
        f"{app_version()}, exported with status `{status}` in the **{result.format}** format.", "",
        "```python", "from datasets import load_dataset",
        f"ds = load_dataset(\"PATH_OR_REPO\")  # splits: {', '.join(files) or 'none (no rows)'}", "```", "",
        "## Counts", "", "| split | rows | file |", "| --- | --- | --- |",
        *[f"| {name} | {result.counts[name]} | `{path}` |" for name, path in files.items()],
        "", f"Split by image hash: `int(image_sha256[:8], 16) / 2**32 < {split}` is train, the rest test, "
        "so a photo stays in its split across exports (see `manifest.json`)."
        + (" One photo moved to the other split so that a small export has both." if result.rescued else ""),
    ]
    if result.skipped_without_image:
        lines += ["", f"{result.skipped_without_image} approved rows are not here: only their URL is known."]
    lines += ["", "## Columns", "", *[f"- `{name}`: {text}" for name, text in columns.items()]]
    lines += ["", "## Licence", "", "Rows per licence (HumanCaption-derived rows are cc-by-4.0, research and "
              "education use; others carry the licence recorded when the photo was added):", "",
              *[f"- {name or 'none recorded'}: {n}" for name, n in sorted(licences.items(), key=lambda kv: -kv[1])]]
    faces = (f"Detected faces were blurred (OpenCV's frontal-face Haar cascade): {result.faces_blurred} in "
             f"{result.images_written} images. The detector misses profiles and small faces: look before sharing."
             if result.blur_faces else
             "Faces are **not** blurred: these are identifiable photos of people. Share only with their consent "
             "and licence.")
    lines += ["", "## Faces and metadata", "", faces + " Every image is re-encoded from its pixels: no EXIF, "
              "GPS, ICC or text metadata."]
    models = ", ".join(f"{name} {version} ({n})" for (name, version), n in result.models.most_common())
    dates = result.review_dates
    lines += ["", "## Provenance", "", f"- App: HumanVLM Studio {app_version()}",
              f"- Draft captions by: {models or 'none'}",
              f"- Reviewed: {dates[0] or '?'} to {dates[1] or '?'} (UTC)" if dates else "- Reviewed: -",
              f"- Reviewers: {result.reviewers}", ""]
    return "\n".join(lines)


def write_llamafactory_info(folder: Path, files: dict[str, str]) -> Path:
    """dataset_info.json: one LLaMA-Factory entry per split file (the test split as `..._test`)."""
    entry = {
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "images": "image"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    }
    info = {(LLAMAFACTORY_NAME if name == "train" else f"{LLAMAFACTORY_NAME}_{name}"): {"file_name": path, **entry}
            for name, path in files.items()}
    path = folder / "dataset_info.json"
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path
