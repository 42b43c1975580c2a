"""Export: HumanCaption-HQ parquet round trip through `datasets`, LLaVA JSON, deterministic
split, atomic replacement under crashes, no EXIF/GPS in images, face blurring."""

import io
import json
import subprocess
import sys

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

import annotate.export as export_module
from annotate.errors import ExportFailed
from annotate.export import export, rescued_photo, split_of
from annotate.faces import detect_faces
from annotate.records import Draft, NewItem
from annotate.store import Store
from tests.conftest import ASTRONAUT, REPO

CAMERA = REPO / "static" / "examples" / "camera.png"


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'queue.db'}", tmp_path / "data") as opened:
        yield opened


def review_all(store, reviewer="alice", reject_ids=()):
    """Claim everything; correct and approve (or reject) each item."""
    while (item := store.claim_next(reviewer)) is not None:
        if item.id in reject_ids:
            store.reject(item.id, reviewer, "not usable")
            continue
        fields = {"face": f"face {item.id}", "background": f"background {item.id}"}
        version = store.submit_correction(item.id, reviewer, f"Corrected caption {item.id}.", item.version, fields)
        store.approve(item.id, reviewer, expected_version=version)


def add_urls(store, n, start=0):
    store.enqueue_many([NewItem(f"{i:064x}"[::-1], "url", Draft("demo", "v2", f"draft {i}"),
                                url=f"https://example.org/{i}.jpg", licence="cc-by-4.0")
                        for i in range(start, start + n)])


@pytest.fixture
def reviewed(store):
    store.enqueue(ASTRONAUT, Draft("demo", "v1", "a person in a suit"), licence="public domain")
    store.enqueue(CAMERA, Draft("demo", "v1", "a man with a camera"))
    add_urls(store, 6)
    review_all(store, reject_ids={3})
    return store


def test_humancaptionhq_round_trip_through_datasets(reviewed, tmp_path):
    out = tmp_path / "export"
    result = export(reviewed, out, format="humancaptionhq", split=0.5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["total"] == 7 and manifest["format"] == "humancaptionhq"
    files = {name: str(out / f"{name}.parquet") for name in ("train", "test")}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    rows = [row for name in ("train", "test") for row in loaded[name]]
    assert len(rows) == 7 == sum(result.counts.values())
    for row in rows:
        item = reviewed.get_item(row["item_id"])
        assert item.status == "approved"
        human, gpt = row["human_caption_hq"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        assert gpt == {"from": "gpt", "value": item.caption}
        assert (row["face"], row["background"], row["body"]) == (item.fields["face"], item.fields["background"], None)
        assert (row["image_sha256"], row["reviewer"], row["model_version"]) == (item.image.sha256, "alice", item.draft.model_version)
        assert row["edit_rate"] == pytest.approx(item.edit_rate)
        assert row["licence"] == item.image.licence
        moved = rescued_photo([i.image.sha256 for i in reviewed.list_items() if i.image.path], 0.5)
        assert row["split"] == (moved[1] if moved and moved[0] == item.image.sha256 else split_of(item.image.sha256, 0.5))
        if item.image.path:  # local photos travel with the export: embedded, and as files
            assert row["url"] is None and row["image"].size == (item.image.width, item.image.height)
            assert (out / "images" / f"{item.image.sha256}.png").is_file()
        else:
            assert row["url"] == item.image.url and row["image"] is None
    assert 3 not in [row["item_id"] for row in rows]  # rejected items stay out


def test_llava_json_with_images_next_to_it(reviewed, tmp_path):
    out = tmp_path / "llava"
    result = export(reviewed, out, format="llava", split=1.0)
    train = json.loads((out / "train.json").read_text())
    assert not (out / "test.json").exists()  # nothing held out: no file
    assert len(train) == 2 and result.skipped_without_image == 5  # URL-only items have no file
    for row in train:
        item = reviewed.get_item(int(row["id"]))
        assert (out / row["image"]).is_file()
        assert row["conversations"][0]["value"].startswith("<image>\n")
        assert row["conversations"][1] == {"from": "gpt", "value": item.caption}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped_without_image"] == 5 and manifest["item_ids"]["train"] == [1, 2]


def test_split_is_by_image_hash_and_stable_across_exports(store, tmp_path):
    add_urls(store, 300)
    review_all(store)
    first = export(store, tmp_path / "a", split=0.8)
    assert 0.7 < first.counts["train"] / 300 < 0.9
    add_urls(store, 100, start=300)  # more data later: old items keep their split
    review_all(store, reviewer="bob")
    second = export(store, tmp_path / "b", split=0.8)
    for name in ("train", "test"):
        assert set(first.item_ids[name]) <= set(second.item_ids[name])
    third = export(store, tmp_path / "a", split=0.8)  # re-export into the same folder
    assert [i for i in third.item_ids["test"] if i <= 300] == first.item_ids["test"]
    assert third.item_ids == second.item_ids


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_crash_midway_leaves_the_previous_export_intact(reviewed, tmp_path, monkeypatch):
    out = tmp_path / "export"
    export(reviewed, out)
    before = snapshot(out)
    add_urls(reviewed, 10, start=100)
    review_all(reviewed)
    monkeypatch.setattr(export_module, "CHUNK_ROWS", 3)

    def crash(rows):
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        export(reviewed, out, progress=crash)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".export.tmp")) == []

    writes = iter(range(100))

    def disk_full(path):  # the second file to be synced finds the disk full
        if next(writes) == 1:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "fsync_file", disk_full)
    with pytest.raises(ExportFailed, match="previous export left intact"):
        export(reviewed, out)
    assert snapshot(out) == before


def test_a_killed_process_leaves_no_partial_file(reviewed, tmp_path):
    out = tmp_path / "export"
    export(reviewed, out)
    before = snapshot(out)
    add_urls(reviewed, 10, start=100)
    review_all(reviewed)
    script = (
        "import os, sys\n"
        "import annotate.export as e\n"
        "from annotate.store import Store\n"
        "e.CHUNK_ROWS = 3\n"
        "calls = []\n"
        "def die(rows):\n"
        "    calls.append(rows)\n"
        "    if len(calls) == 2: os._exit(9)  # killed midway: no cleanup runs\n"
        f"e.export(Store(sys.argv[1], sys.argv[2]), sys.argv[3], progress=die)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, reviewed.url, str(reviewed.data_dir), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert snapshot(out) == before  # the old export, complete; nothing half-written inside it
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".export.tmp")]
    assert len(leftovers) == 1  # hidden beside it, never inside it
    export(reviewed, out)  # the next export cleans up after the crashed one
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export.tmp")] == []
    assert json.loads((out / "manifest.json").read_text())["counts"]["total"] == 17


def test_refuses_to_replace_a_folder_that_is_not_an_export(reviewed, tmp_path):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    with pytest.raises(ExportFailed, match="not a previous export"):
        export(reviewed, out)
    assert (out / "thesis.txt").read_text() == "precious"


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (59.0, 20.0, 0.0), 3: "E", 4: (18.0, 3.0, 0.0)}  # GPS IFD
    buffer = io.BytesIO()
    Image.open(ASTRONAUT).convert("RGB").save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def test_exported_images_never_carry_exif_or_gps(store, tmp_path):
    data = gps_jpeg()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the source really has GPS
    store.enqueue(data, Draft("demo", "v1", "an astronaut"))
    review_all(store)
    for fmt in ("humancaptionhq", "llava"):
        out = tmp_path / fmt
        export(store, out, format=fmt, split=1.0)
        (image,) = (out / "images").iterdir()
        raw = image.read_bytes()
        assert b"Exif" not in raw and b"PhoneMaker" not in raw
        if fmt == "humancaptionhq":  # the bytes embedded in the parquet are the same clean file
            (row,) = pq.read_table(out / "train.parquet").to_pylist()
            assert row["image"] == {"bytes": raw, "path": f"images/{image.name}"}
        with Image.open(image) as exported:
            assert len(exported.getexif()) == 0 and "exif" not in exported.info


def test_blur_faces_changes_the_face_and_nothing_else(store, tmp_path):
    store.enqueue(ASTRONAUT, Draft("demo", "v1", "an astronaut"))
    review_all(store)
    out = tmp_path / "blurred"
    result = export(store, out, format="llava", blur_faces=True, split=1.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.faces_blurred >= 1 and manifest["faces_blurred"] == result.faces_blurred and manifest["blur_faces"]
    original = np.asarray(Image.open(ASTRONAUT).convert("RGB")).astype(int)
    (image,) = (out / "images").iterdir()
    blurred = np.asarray(Image.open(image).convert("RGB")).astype(int)
    inside = np.zeros(original.shape[:2], bool)
    boxes = detect_faces(Image.open(ASTRONAUT).convert("RGB"))
    for x, y, w, h in boxes:
        inside[y:y + h, x:x + w] = True
        assert np.abs(original[y:y + h, x:x + w] - blurred[y:y + h, x:x + w]).mean() > 3  # really blurred
    x, y, w, h = boxes[0]
    face_center = (y + h // 2, x + w // 2)
    assert 100 < face_center[0] < 250 and 150 < face_center[1] < 300  # the astronaut's face
    assert np.array_equal(original[~inside], blurred[~inside])  # the rest is untouched (PNG)
    assert f"{result.faces_blurred} faces blurred" in result.summary()
    plain = export(store, tmp_path / "plain", format="llava", split=1.0)
    assert plain.faces_blurred == 0 and "blurred" not in plain.summary()


def test_blur_that_finds_no_face_says_so(store, tmp_path):
    store.enqueue(Image.new("RGB", (64, 64), "teal"), Draft("demo", "v1", "a teal square"))
    review_all(store)
    result = export(store, tmp_path / "out", format="llava", blur_faces=True, split=1.0)
    assert result.summary().endswith("1 image, 0 faces blurred")


def test_empty_export_is_valid(store, tmp_path):
    result = export(store, tmp_path / "empty")
    assert result.counts == {"train": 0, "test": 0}
    manifest = json.loads((tmp_path / "empty" / "manifest.json").read_text())
    assert manifest["files"] == ["README.md"] and manifest["counts"]["total"] == 0
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["README.md", "manifest.json"]


def test_load_dataset_on_the_folder_gives_both_splits_and_decoded_images(reviewed, tmp_path):
    out = tmp_path / "hq"
    result = export(reviewed, out, split=0.5)
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "test"}
    assert {name: loaded[name].num_rows for name in loaded} == result.counts and sum(result.counts.values()) == 7
    photos = [row["image"] for name in loaded for row in loaded[name] if row["image"] is not None]
    assert sorted(img.size for img in photos) == sorted(Image.open(p).size for p in (ASTRONAUT, CAMERA))
    assert all(row["url"] for name in loaded for row in loaded[name] if row["image"] is None)  # URL kept
    meta = DatasetCard.load(out / "README.md").data
    assert meta.configs == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "train.parquet"}, {"split": "test", "path": "test.parquet"}]}]
    assert meta.license == "other" and "image-to-text" in meta.task_categories and meta.size_categories == ["n<1K"]
    text = DatasetCard.load(out / "README.md").text
    assert f"| train | {result.counts['train']} |" in text and "not** blurred" in text
    assert "- public domain: 1" in text and "- cc-by-4.0: 5" in text  # the URL rows' recorded licence
    assert "demo v1 (2)" in text and "demo v2 (5)" in text and "HumanVLM Studio 0.1.0" in text


def test_llava_folder_loads_and_registers_with_llamafactory(reviewed, tmp_path):
    out = tmp_path / "llava"
    result = export(reviewed, out, format="llava", split=0.5)
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {name: loaded[name].num_rows for name in loaded} == result.counts == {"train": 1, "test": 1}
    info = json.loads((out / "dataset_info.json").read_text())
    # LLaMA-Factory's documented schema (data/README.md): file_name, formatting, columns, tags.
    assert set(info) == {"humanvlm_corrections", "humanvlm_corrections_test"}
    for name, entry in info.items():
        rows = json.loads((out / entry["file_name"]).read_text())
        assert entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "conversations", "images": "image"}
        tags = entry["tags"]
        for row in rows:  # every turn uses the declared tags; images resolve against --dataset_dir
            assert [t[tags["role_tag"]] for t in row["conversations"]] == [tags["user_tag"], tags["assistant_tag"]]
            assert (out / row["image"]).is_file()


def test_a_small_export_still_has_a_test_item(store, tmp_path):
    store.enqueue(ASTRONAUT, Draft("demo", "v1", "an astronaut"))
    store.enqueue(CAMERA, Draft("demo", "v1", "a photographer"))
    review_all(store)
    shas = [item.image.sha256 for item in store.list_items()]
    split = max(int(s[:8], 16) for s in shas) / 2**32 + 1e-6  # both photos hash to the train side
    assert {split_of(s, split) for s in shas} == {"train"}
    for fmt in ("llava", "humancaptionhq"):
        result = export(store, tmp_path / fmt, format=fmt, split=split)
        assert result.counts == {"train": 1, "test": 1} and result.rescued == 1
        moved = max(store.list_items(), key=lambda i: int(i.image.sha256[:8], 16)).id
        assert result.item_ids["test"] == [moved]  # the photo closest to the test side
    assert export(store, tmp_path / "all", split=1.0).counts == {"train": 2, "test": 0}  # asked for: kept
    assert rescued_photo(shas[:1], split) is None  # one photo: nothing to move
