"""The README stays true: every CLI command is documented, the set-up is two commands."""

import re

from app.cli import build_parser
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return list(sub.choices)


def test_every_command_is_in_the_readme():
    missing = [c for c in _commands() if f"app.py {c}" not in README and f"app.py [{c}]" not in README]
    assert not missing, f"undocumented commands: {missing}"


def test_readme_front_matter_matches_requirements():
    pinned = re.search(r"^gradio(?:\[[a-z,]+\])?==([\d.]+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert f"sdk_version: {pinned}" in README
    assert "app_file: app.py" in README  # the rest of the front matter: tests/test_space_card.py


def test_two_setup_commands_and_ci_runs_the_test_one():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
