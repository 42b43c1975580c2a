"""`python app.py caption` on good and bad files: JSON lines, progress and exit status."""

import json
import os

from PIL import Image

from tests.conftest import ASTRONAUT, run_app


def test_captions_files_and_folders_as_json_lines(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    Image.open(ASTRONAUT).convert("RGB").save(folder / "a.jpg")
    Image.open(ASTRONAUT).resize((100, 160)).save(folder / "nested" / "b.png")
    Image.open(ASTRONAUT).convert("RGB").save(folder / "c.webp")
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    result = run_app("caption", str(folder), str(ASTRONAUT), "--json", "--max-new-tokens", "12",
                     "--batch-size", "2", "--preset", "face")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(os.path.basename(r["path"]) for r in records) == ["a.jpg", "astronaut.png", "b.png", "c.webp"]
    for r in records:
        assert set(r) == {"path", "caption", "model", "preset", "seconds"}
        assert r["model"] == "demo" and r["preset"] == "face"
        assert isinstance(r["caption"], str) and r["seconds"] >= 0
    assert "untrained" in result.stderr  # the demo model says so at start-up
    assert "4/4" in result.stderr  # a progress bar from four images on


def test_bad_files_get_error_lines_and_exit_1(tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is a text file with a photo's name")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    result = run_app("caption", str(bad), str(ASTRONAUT), str(empty), str(tmp_path / "missing.png"),
                     "--json", "--max-new-tokens", "8")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    # One line per input, in the order given, failures included.
    assert [os.path.basename(r["path"]) for r in lines] == ["holiday.jpg", "astronaut.png", "empty.png", "missing.png"]
    records = {os.path.basename(r["path"]): r for r in lines}
    assert "caption" in records["astronaut.png"] and "error" not in records["astronaut.png"]
    assert "not an image" in records["holiday.jpg"]["error"]
    assert "empty" in records["empty.png"]["error"]
    assert "missing.png" in records["missing.png"]["error"]


def test_plain_output_and_free_prompt(tmp_path):
    result = run_app("caption", str(ASTRONAUT), "--prompt", "What is she holding?", "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{ASTRONAUT}: ")


def test_usage_errors_are_clean():
    result = run_app("caption", str(ASTRONAUT), "--preset", "nope")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    result = run_app("caption", str(ASTRONAUT), "--model", "/nonexistent/model")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: could not load /nonexistent/model")
    assert "Traceback" not in result.stderr
    result = run_app("caption", str(ASTRONAUT), "--batch-size", "0")
    assert result.returncode == 2 and "--batch-size: must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_make_demo_model_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = run_app("make-demo-model", str(tmp_path))
    assert result.returncode == 2 and result.stderr.strip() == f"error: {tmp_path} exists and is not a demo model; choose a new or empty folder"
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_help_lists_every_command():
    result = run_app("--help")
    assert result.returncode == 0
    for command in ("serve", "caption", "make-demo-model"):
        assert command in result.stdout


def test_a_busy_port_is_one_clear_line():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_app("--port", str(port), "--no-store")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot serve on 127.0.0.1:{port}") and "--port" in last
    assert "Traceback" not in result.stderr


def test_a_decompression_bomb_is_one_error_line_and_no_pillow_warning(tmp_path):
    from PIL import Image

    Image.new("1", (10_000, 10_000)).save(tmp_path / "huge.png")  # 100 megapixels in a few KB
    result = run_app("caption", str(tmp_path / "huge.png"), "--json", "--max-new-tokens", "8")
    assert result.returncode == 1
    assert "pixel limit" in json.loads(result.stdout.splitlines()[0])["error"]
    assert "DecompressionBombWarning" not in result.stderr
