"""The README's fine-tuning recipe, run as written on a 4-item queue: every step exits 0. An
export whose held-out split is empty still trains: evaluation is skipped with a clear note and
the version is usable, marked "not evaluated" (one status, everywhere)."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.train_support import approve_shapes

pytestmark = pytest.mark.slow


def _recipe() -> list[list[str]]:
    block = (REPO / "README.md").read_text().split("## Fine-tuning on the corrections", 1)[1].split("```bash", 1)[1]
    lines = [line.split("#")[0].strip() for line in block.split("```", 1)[0].strip().splitlines()]
    commands = [line.split()[2:] for line in lines if line.startswith("python app.py")]
    return [c for c in commands if not c[0].startswith("--")]  # the last line serves the app: not run here


def _run(args: list[str], cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "app.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture()
def four_items(tmp_path):
    import os

    from annotate.store import Store

    env = {**os.environ, "HUMANVLM_DATA_DIR": str(tmp_path / "data")}
    with Store(f"sqlite:///{tmp_path / 'data' / 'studio.db'}", tmp_path / "data") as store:
        approve_shapes(store, 4, seed=11)
    return tmp_path, env


def test_the_readme_recipe_exits_0_at_every_step(four_items):
    cwd, env = four_items
    steps = _recipe()
    assert [s[0] for s in steps] == ["export", "train", "eval"]  # serving is the last line, not run here
    for args in steps:
        done = _run(args, cwd, env)
        assert done.returncode == 0, (args, done.stderr[-3000:])
    manifest = json.loads((cwd / "exports" / "v1" / "manifest.json").read_text())
    assert manifest["counts"]["test"] >= 1  # a 4-item export still holds one item out
    # Scoring the base model itself saves next to the export, never inside the model cache.
    done = _run(["eval", "--model", "demo", "--data", "exports/v1"], cwd, env)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = (cwd / json.loads(done.stdout.strip().splitlines()[-1])["saved_to"]).resolve()
    assert saved.parent == (cwd / "exports" / "v1").resolve() and saved.is_file()


def test_an_empty_held_out_split_skips_evaluation_with_a_note(four_items):
    from train.versions import read_version

    cwd, env = four_items
    assert _run(["export", "--format", "llava", "--out", "all", "--split", "1.0"], cwd, env).returncode == 0
    done = _run(["train", "--data", "all", "--base", "demo", "--out", "v", "--evaluate", "--max-steps", "2"], cwd, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"not evaluated: the export's held-out \(test\) split is empty", done.stderr)
    status = json.loads(next((cwd / "v").rglob("status.json")).read_text())
    assert status["phase"] != "failed" and "not evaluated" in status["note"]
    assert read_version(cwd / "v") is not None  # the version is there and loads
