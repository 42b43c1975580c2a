"""The Train tab's form: more settings (LoRA rank and alpha, checkpoint interval, cutoff...),
the exact command a job runs, and why Resume is unavailable."""

import shlex

import pytest
from gradio_client import Client

from tests.conftest import running_app
from tests.train_support import approve_shapes


@pytest.fixture()
def served(tmp_path):
    from annotate.store import Store
    from train.jobs import JobRunner, RunnerConfig

    store = Store(f"sqlite:///{tmp_path / 'studio.db'}", tmp_path / "data")
    approve_shapes(store, 4, seed=3)
    runner = JobRunner(RunnerConfig(db_url=store.url, models_dir=tmp_path / "models"))
    with running_app(store=store, jobs=runner) as url:
        yield Client(url, verbose=False), runner
    runner.close()
    store.close()


FORM = ["demo", "lora", 0, 3, 0, 2]  # base, method, epochs, max steps, lr, batch


def test_preview_is_the_command_the_cli_accepts(served):
    from app.cli import build_parser

    client, runner = served
    command = client.predict(*FORM, 8, 16, 2, 5, 2048, "frozen", True, api_name="/ui_train_preview")
    export, train = command.splitlines()
    assert export == "python app.py export --format llava --out EXPORT"
    argv = shlex.split(train)[2:]
    args = build_parser().parse_args(argv)
    assert (args.base, args.max_steps, args.batch_size, args.lora_r, args.lora_alpha, args.grad_accum,
            args.save_steps, args.max_length, args.vision_tower, args.merge) == \
        ("demo", 3, 2, 8, 16, 2, 5, 2048, "frozen", True)
    with pytest.raises(Exception, match="(?i)lora"):  # the same checks as the job: a rank of -1 is refused
        client.predict(*FORM, -1, 0, 0, 0, 0, None, False, api_name="/ui_train_preview")
    assert runner.list(limit=5) == []  # previewing starts nothing


def test_more_settings_reach_the_job(served):
    client, runner = served
    client.predict(*FORM, 4, 8, 0, 1, 0, None, False, api_name="/ui_train_start")
    job = runner.list(limit=1)[0]
    assert (job.options["lora_r"], job.options["lora_alpha"], job.options["save_steps"]) == (4, 8, 1)
    runner.cancel(job.id)


def test_resume_says_why_it_is_unavailable():
    from app.train_tab import job_markdown
    from train.jobstore import Job

    fields = Job.__dataclass_fields__
    base = {name: None for name in fields}
    job = Job(**{**base, "id": 7, "status": "cancelled", "options": {"base": "demo", "method": "lora", "save_steps": 50},
                 "attempts": 1, "out_dir": "/nonexistent", "data_dir": None})
    text = job_markdown(job)
    assert "Resume** is not available" in text and "one every 50 steps" in text
