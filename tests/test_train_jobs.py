"""Training jobs: a separate process per job, recorded in the database, one at a time,
cancellable, resumable, found again after an app restart, failures kept with their reason."""

import argparse
import os
import time
from pathlib import Path

import psutil
import pytest

from tests.train_support import approve_shapes
from train.errors import JobAlreadyRunning
from train.jobs import JobRunner, RunnerConfig, available_corrections, resumable, runner_from_args
from train.jobstore import JobStore
from train.output import find_checkpoint

pytestmark = pytest.mark.slow
QUICK = {"max_steps": 3, "batch_size": 8}


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    from annotate.store import Store

    root = tmp_path_factory.mktemp("jobs")
    store = Store(f"sqlite:///{root / 'studio.db'}", root / "data")
    approve_shapes(store, 30, seed=5)
    yield store, root
    store.close()


@pytest.fixture()
def runner(queue):
    store, root = queue
    runner = JobRunner(RunnerConfig(db_url=store.url, models_dir=root / "models"))
    yield runner
    for job in runner.list(limit=50):  # leave no job running for the next test
        if job.active:
            runner.cancel(job.id)
            runner.wait(job.id, 60)
    runner.close()


def _wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_job_trains_in_its_own_process_and_is_recorded(queue, runner):
    import json

    from app.train_status import HELDOUT, TRAIN, jobs_frame, loss_frame

    store, _ = queue
    counts = available_corrections(store)
    assert counts["train"] + counts["heldout"] == 30 and counts["train"] > 0
    settings = QUICK | {"lora_targets": "q_proj,v_proj", "lr_scheduler_type": "linear", "eval_steps": 2}
    job = runner.start(settings, store=store, heldout=0.2)
    assert job.status == "queued"  # start returns at once: the work happens elsewhere
    done = runner.wait(job.id, 300)
    assert done.status == "finished", done.error
    assert done.pid and done.pid != os.getpid() and done.returncode == 0
    assert done.version and done.metrics["steps"] == 3
    assert set(done.evaluation) == {"before", "after"} and "token_f1" in done.evaluation["after"]
    info = runner.progress(done.id)
    assert [p["step"] for p in info["points"]] == [1, 2, 3]
    # The held-out loss every --eval-steps (2) steps and at the end, on the job's own 20% held-out split.
    assert [p["step"] for p in info["eval_points"]] == [2, 3] and info["eval_points"][0]["eval_loss"] > 0
    assert done.metrics["final_heldout_loss"] == info["eval_points"][-1]["eval_loss"]  # kept with the version
    assert info["status"]["phase"] == "finished" and "train" in info["log"]
    frame = loss_frame(info["points"], info["eval_points"]).dropna()  # what the plot draws
    assert frame["split"].tolist() == [TRAIN] * 3 + [HELDOUT] * 2
    # The settings reached the trainer: linear decay, LoRA on the attention's q and v only.
    out = Path(done.out_dir)
    config = json.loads((out / "training" / "training_config.json").read_text())
    assert config["lr_scheduler_type"] == "linear" and config["lora_target_modules"] == ["q_proj", "v_proj"]
    assert "gate_proj" not in json.loads((out / "adapter_config.json").read_text())["target_modules"]
    manifest = json.loads((Path(done.data_dir) / "manifest.json").read_text())
    assert manifest["split"]["train_fraction"] == 0.8
    # Recorded in the queue's database, readable by anyone holding its URL; listed newest first.
    assert JobStore(store.url).get(job.id).status == "finished"
    row = jobs_frame(runner.list()).iloc[0]
    assert (row["id"], row["status"], row["base"], row["version"]) == (job.id, "finished", "demo", done.version)
    assert row["duration"].count(":") == 1


def test_one_job_at_a_time_cancel_and_resume(queue, runner):
    store, _ = queue
    job = runner.start({"max_steps": 30, "save_steps": 2, "batch_size": 4}, store=store)
    with pytest.raises(JobAlreadyRunning, match="only one training job runs at a time"):
        runner.start(QUICK, store=store)
    _wait_for(lambda: find_checkpoint(Path(job.out_dir)), what="a first checkpoint")
    pid = runner.get(job.id).pid
    runner.cancel(job.id)
    cancelled = runner.wait(job.id, 60)
    assert cancelled.status == "cancelled"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert resumable(cancelled)
    resumed = runner.resume(job.id)
    assert resumed.attempts == 2
    done = runner.wait(job.id, 300)
    assert done.status == "finished", done.error
    steps = [p["step"] for p in runner.progress(job.id)["points"]]
    assert steps == sorted(steps) and steps[-1] == 30 and len(steps) == len(set(steps))


def test_an_app_restart_finds_running_jobs_or_marks_them_interrupted(queue, runner):
    store, root = queue
    job = runner.start({"max_steps": 40, "batch_size": 4}, store=store)
    _wait_for(lambda: runner.get(job.id).status == "running", what="the job to run")
    # A second runner on the same database, as after an app restart, watches it again.
    again = JobRunner(RunnerConfig(db_url=store.url, models_dir=root / "models"))
    assert job.id in again._threads
    assert again.wait(job.id, 300).status == "finished"
    again.close()
    # A job whose process is gone (the machine rebooted) becomes interrupted.
    lost = runner.jobs.create(dict(runner.get(job.id).options), str(root / "lost"), str(root / "lost.log"), None)
    dead = psutil.Popen(["true"])
    dead.wait()
    runner.jobs.update(lost.id, status="running", pid=dead.pid)
    third = JobRunner(RunnerConfig(db_url=store.url, models_dir=root / "models"))
    interrupted = third.get(lost.id)
    assert interrupted.status == "interrupted" and "resume" in interrupted.error
    third.close()


def test_a_failing_job_records_its_reason_and_the_runner_carries_on(queue, runner, tmp_path):
    from app.train_status import loss_frame

    store, _ = queue
    job = runner.start({"base": str(tmp_path / "no-such-model"), **QUICK}, store=store)
    failed = runner.wait(job.id, 300)
    assert failed.status == "failed" and failed.returncode == 2
    assert "could not load" in failed.error or "no-such-model" in failed.error, failed.error
    assert runner.active() is None
    # Nothing held out: it trains all the same, with the training loss alone (no eval points).
    again = runner.wait(runner.start(QUICK, store=store, heldout=0).id, 300)
    assert again.status == "finished" and "not evaluated" in again.error
    info = runner.progress(again.id)
    assert len(info["points"]) == 3 and info["eval_points"] == []
    assert set(loss_frame(info["points"], info["eval_points"]).dropna()["split"]) == {"train"}


def test_starting_with_nothing_approved_is_refused_at_once(tmp_path):
    from annotate.store import Store
    from train.errors import DataError

    store = Store(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "data")
    runner = JobRunner(RunnerConfig(db_url=store.url, models_dir=tmp_path / "models"))
    with pytest.raises(DataError, match="no approved corrections"):
        runner.start(QUICK, store=store)
    assert runner.list() == []  # no job that fails a second later
    runner.close()
    store.close()


def test_runner_from_the_serve_arguments(tmp_path, monkeypatch):
    monkeypatch.delenv("HUMANVLM_MODELS_DIR", raising=False)
    args = argparse.Namespace(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d"), model="demo",
                              cache_dir=None, no_store=False)
    runner = runner_from_args(args)
    assert runner.config.models_dir == (tmp_path / "d" / "models").resolve()
    assert runner.config.default_base == "demo" and runner.active() is None
    runner.close()
    assert runner_from_args(argparse.Namespace(no_store=True)) is None


def test_out_of_memory_reasons_say_what_to_do():
    import torch

    from train.progress import failure_reason

    reason = failure_reason(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert reason.startswith("out of memory") and "--batch-size" in reason and "qlora" in reason
