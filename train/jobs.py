"""Training jobs for the web app: export, then `python app.py train ...` in its own process.

A job never runs inside a web request. `JobRunner.start` records a queued job and returns;
a worker thread exports the approved corrections and starts the training process (its own
session, so it outlives an app restart), then waits for it and records the outcome. The UI
polls `progress(job_id)`: the job row plus the files the training process writes (status.json,
progress.jsonl, the log). One job at a time: a second start raises `JobAlreadyRunning`.
On start-up the runner finds jobs left active: still-running processes are watched again,
the others are marked `interrupted` and can be resumed from their last checkpoint.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path

from train.errors import DataError, JobError
from train.jobstore import ACTIVE, Job, JobStore, utcnow
from train.options import TrainOptions, resolve, to_argv
from train.progress import failure_reason, read_eval_progress, read_progress, read_status

NO_TRAIN_DATA = "no approved corrections with a photo in the train split yet: approve more in the Review tab first"

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR_ENV = "HUMANVLM_MODELS_DIR"
CANCEL_GRACE_S = 10.0  # SIGTERM first, SIGKILL after this long
EXPORT_FORMAT = "llava"
# Settings the UI may pass to `start`; the rest (data, out, resume...) the runner decides.
SETTINGS = {f.name for f in fields(TrainOptions)} - {"data", "out", "resume", "evaluate", "cache_dir"}
MAX_HELDOUT = 0.5  # the share of a fresh export held out: in [0, 0.5] (0: nothing, no evaluation)


@dataclass
class RunnerConfig:
    db_url: str
    models_dir: Path  # every job's version folder goes here; exports in models_dir/exports
    default_base: str = "demo"
    cache_dir: str | None = None
    split: float = 0.9  # train fraction of the export (the queue's deterministic split)
    python: str = sys.executable
    app_py: Path = REPO / "app.py"
    poll_s: float = 1.0


class JobRunner:
    def __init__(self, config: RunnerConfig):
        self.config = config
        self.config.models_dir = Path(config.models_dir).resolve()
        self.jobs = JobStore(config.db_url)
        self._lock = threading.Lock()
        self._threads: dict[int, threading.Thread] = {}
        self.recover()

    # ---- starting and stopping -----------------------------------------------------------

    def start(self, settings: dict | None = None, store=None, data: str | None = None,
              heldout: float | None = None) -> Job:
        """Queue a job on an export folder (`data`) or on a fresh export of `store`, holding out
        `heldout` of it (default: the runner's split) for the eval loss and the scores."""
        settings = dict(settings or {})
        unknown = set(settings) - SETTINGS
        if unknown:
            raise JobError(f"unknown training settings: {', '.join(sorted(unknown))}")
        if data is None and store is None:
            raise JobError("nothing to train on: give an export folder or the review queue")
        split = self._split(heldout, data)
        settings["base"] = settings.get("base") or self.config.default_base
        name = f"{datetime.now():%Y%m%d-%H%M%S}-{settings.get('method', 'lora')}-{secrets.token_hex(2)}"
        out_dir = self.config.models_dir / name
        options = TrainOptions(data=str(Path(data).resolve()) if data else "", out=str(out_dir), evaluate=True,
                               cache_dir=self.config.cache_dir, **settings)
        resolve(options, is_demo=looks_demo(options.base))  # refuse bad numbers now, not in the job's log
        if data is not None:
            _check_export(Path(options.data))
        elif not available_corrections(store, split)["train"]:
            raise DataError(NO_TRAIN_DATA)  # now, not as a job that fails a second later
        record = asdict(options) | ({"heldout": round(1 - split, 6)} if data is None else {})
        with self._lock:
            job = self.jobs.create(record, str(out_dir), str(out_dir / "training" / "train.log"), options.data or None)
            out_dir.mkdir(parents=True, exist_ok=True)
            self._launch(job.id, store)
        return job

    def _split(self, heldout: float | None, data: str | None) -> float:
        """The train fraction of a fresh export."""
        if heldout is None:
            return self.config.split
        if data is not None:
            raise JobError("the held-out share applies to a fresh export; a chosen export keeps its own split")
        if not 0 <= heldout <= MAX_HELDOUT:
            raise JobError(f"the held-out share is between 0 and {MAX_HELDOUT:g} (0: hold nothing out, no evaluation)")
        return 1 - heldout

    def resume(self, job_id: int) -> Job:
        """Run an interrupted, cancelled or failed job again from its last checkpoint."""
        job = self.jobs.get(job_id)
        if job.status in ACTIVE:
            raise JobError(f"job {job_id} is {job.status} already")
        if not job.data_dir or not Path(job.data_dir).is_dir():
            raise JobError(f"job {job_id} has no export to resume from; start a new job")
        with self._lock:
            job = self.jobs.requeue(job_id, job.options | {"data": job.data_dir, "resume": True})
            self._launch(job.id, None)
        return job

    def cancel(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job.status not in ACTIVE:
            raise JobError(f"job {job_id} is {job.status}; only a queued or running job can be cancelled")
        job = self.jobs.update(job_id, cancel_requested=1)
        if job.pid:
            self._terminate(job)
        return job

    def _launch(self, job_id: int, store) -> None:
        thread = threading.Thread(target=self._run, args=(job_id, store), name=f"train-job-{job_id}", daemon=True)
        self._threads[job_id] = thread
        thread.start()

    # ---- the worker thread ---------------------------------------------------------------

    def _run(self, job_id: int, store) -> None:
        try:
            job = self.jobs.get(job_id)
            if job.data_dir is None:
                self.jobs.update(job_id, data_dir=self._export(job, store))
            if self.jobs.get(job_id).cancel_requested:
                self.jobs.finish(job_id, "cancelled", error="cancelled before training started")
                return
            proc = self._spawn(self.jobs.get(job_id))
            returncode = proc.wait()
            self._finalize(job_id, returncode)
        except BaseException as exc:  # the job records why; the web app stays up
            log.exception("training job %s failed", job_id)
            self.jobs.finish(job_id, "failed", error=failure_reason(exc))

    def _export(self, job: Job, store) -> str:
        from annotate.export import export

        target = self.config.models_dir / "exports" / f"job-{job.id}"
        split = 1 - job.options.get("heldout", 1 - self.config.split)
        result = export(store, target, format=EXPORT_FORMAT, split=split)
        if not result.counts["train"]:
            raise DataError(NO_TRAIN_DATA)
        return str(target)

    def _spawn(self, job: Job) -> subprocess.Popen:
        options = train_options(job.options | {"data": job.data_dir})
        argv = [self.config.python, str(self.config.app_py), "train", *to_argv(options)]
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(job.log_path, "ab") as log_file:
            log_file.write(f"$ {' '.join(argv)}\n".encode())
            log_file.flush()
            # Own session: Ctrl-C in the app's terminal does not reach it, it survives an
            # app restart, and cancel can signal its whole process group.
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=str(REPO), env=env, start_new_session=True)
        job = self.jobs.update(job.id, status="running", pid=proc.pid, started_at=utcnow())
        if job.cancel_requested:  # cancelled while the process was starting
            self._terminate(job)
        return proc

    def _finalize(self, job_id: int, returncode: int | None) -> None:
        from train.versions import read_version

        job = self.jobs.get(job_id)
        version, status = read_version(job.out_dir), read_status(job.out_dir)
        if job.cancel_requested:
            self.jobs.finish(job_id, "cancelled", returncode=returncode, error="cancelled")
        elif version is not None:
            scores = {k: (version.evaluation(k) or {}).get("metrics") for k in ("before", "after")}
            error = status.get("error") if returncode not in (0, None) else status.get("note")
            self.jobs.finish(job_id, "finished", returncode=returncode, version=version.version,
                             metrics=version.metrics, evaluation=scores, error=error)
        elif returncode is None and status.get("phase") != "failed":
            self.jobs.finish(job_id, "interrupted", error="the training process stopped while the app was not "
                             "watching it; resume the job to continue from its last checkpoint")
        else:
            self.jobs.finish(job_id, "failed", returncode=returncode, error=_reason(job, status, returncode))

    # ---- processes -----------------------------------------------------------------------

    def _terminate(self, job: Job) -> None:
        if not _is_job_process(job):
            return
        try:
            os.killpg(job.pid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def kill_later():
            deadline = time.monotonic() + CANCEL_GRACE_S
            while time.monotonic() < deadline:
                if not _is_job_process(job):
                    return
                time.sleep(0.2)
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended on its own meanwhile: nothing left to stop

        threading.Thread(target=kill_later, name=f"train-job-{job.id}-kill", daemon=True).start()

    def recover(self) -> None:
        """Watch jobs whose process still runs; mark the others interrupted (resumable)."""
        for job in self.jobs.list(limit=100, statuses=ACTIVE):
            if job.id in self._threads:
                continue
            if job.pid and _is_job_process(job):
                log.info("training job %s (pid %s) is still running: watching it again", job.id, job.pid)
                thread = threading.Thread(target=self._watch_pid, args=(job,), name=f"train-job-{job.id}", daemon=True)
                self._threads[job.id] = thread
                thread.start()
            else:
                self.jobs.finish(job.id, "interrupted", error=f"the app stopped while this job was {job.status}; "
                                 "resume it to continue from its last checkpoint")

    def _watch_pid(self, job: Job) -> None:
        """Wait for a process this app did not start (found after a restart); its exit code is unknown."""
        try:
            while _is_job_process(job):
                time.sleep(self.config.poll_s)
            self._finalize(job.id, None)
        except BaseException as exc:
            log.exception("watching training job %s failed", job.id)
            self.jobs.finish(job.id, "failed", error=failure_reason(exc))

    # ---- reading -------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        return self.jobs.get(job_id)

    def list(self, limit: int = 20) -> list[Job]:
        return self.jobs.list(limit=limit)

    def active(self) -> Job | None:
        return self.jobs.active()

    def progress(self, job_id: int, log_lines: int = 30) -> dict:
        """The job, its run's status.json, its loss curves so far (training `points`, held-out
        `eval_points`) and the tail of its log."""
        job = self.jobs.get(job_id)
        return {"job": job, "status": read_status(job.out_dir), "points": read_progress(job.out_dir),
                "eval_points": read_eval_progress(job.out_dir), "log": log_tail(job.log_path, log_lines)}

    def wait(self, job_id: int, timeout: float = 600) -> Job:
        """Block until the job has ended (for the CLI and tests)."""
        deadline = time.monotonic() + timeout
        while (job := self.jobs.get(job_id)).active:
            if time.monotonic() > deadline:
                raise TimeoutError(f"training job {job_id} still {job.status} after {timeout:.0f} s")
            time.sleep(0.2)
        return job

    def close(self) -> None:
        """Stop using the database. Running jobs keep running; a new runner finds them again."""
        self.jobs.close()


def train_options(record: dict) -> TrainOptions:
    """A job's TrainOptions from its record (which also holds the fresh export's `heldout`)."""
    names = {f.name for f in fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in record.items() if k in names})


def looks_demo(base: str | None) -> bool:
    """Whether `base` takes the demo model's recipe (checked before the job loads it)."""
    from train.options import DEMO_DEFAULTS, defaults_for

    return defaults_for(base) is DEMO_DEFAULTS


def _check_export(folder: Path) -> None:
    """A chosen export must exist and have a train split (its manifest says, without reading it)."""
    import json

    if not folder.is_dir():
        raise DataError(f"no export folder at {folder.name}: export again, or pick another")
    try:
        counts = json.loads((folder / "manifest.json").read_text()).get("counts", {})
    except (OSError, ValueError):
        return  # an export made elsewhere: the training process reads and checks it
    if not counts.get("train"):
        raise DataError(f"the export {folder.name} has no train split: export more approved corrections")
    os.utime(folder)  # the app deletes old exports (--retention-hours): this one is in use now


def resumable(job: Job) -> bool:
    from train.output import find_checkpoint

    return job.status in ("interrupted", "cancelled", "failed") and bool(job.data_dir) and \
        find_checkpoint(Path(job.out_dir)) is not None


def _is_job_process(job: Job) -> bool:
    """Is `job.pid` alive and still this job's training process (pids get reused)?"""
    import psutil

    try:
        proc = psutil.Process(job.pid)
        return proc.status() != psutil.STATUS_ZOMBIE and job.out_dir in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _reason(job: Job, status: dict, returncode: int | None) -> str:
    if status.get("phase") == "failed" and status.get("error"):
        return status["error"]
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (the system may have run out of memory: lower the batch size)" if name == "SIGKILL" else ""
        return f"the training process was killed by {name}{hint}"
    lines = [line for line in log_tail(job.log_path, 40).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error" in line.split(":")[0]]
    return (errors or lines or [f"the training process exited with status {returncode}"])[-1][:500]


def log_tail(path: str | Path, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last lines of a log file (read from its end: logs can be long)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = text.replace("\r", "\n")  # progress bars rewrite their line with carriage returns
    return "\n".join(text.splitlines()[-lines:])


def available_corrections(store, split: float = 0.9, page: int = 2000) -> dict[str, int]:
    """Approved items per split of the next export (URL-only photos cannot be trained on)."""
    from annotate.export import rescued_photo, split_of

    counts = {"train": 0, "heldout": 0, "without_photo": 0}
    photos, after = [], 0
    while items := store.list_items(status="approved", limit=page, after_id=after):
        for item in items:
            if item.image.path is None:
                counts["without_photo"] += 1
            else:
                photos.append(item.image.sha256)
                counts["train" if split_of(item.image.sha256, split) == "train" else "heldout"] += 1
        after = items[-1].id
    moved = rescued_photo(photos, split)  # as the export will do: one photo changes side
    if moved:
        counts["train"], counts["heldout"] = (1, counts["heldout"] - 1) if moved[1] == "train" else (counts["train"] - 1, 1)
    return counts


def runner_from_args(args) -> JobRunner | None:
    """The app's job runner: the store's database, versions under $HUMANVLM_MODELS_DIR or DATA/models."""
    if getattr(args, "no_store", False):
        return None
    from annotate.db import resolve_data_dir, resolve_url

    data_dir = resolve_data_dir(getattr(args, "data_dir", None))
    url = resolve_url(getattr(args, "db", None), data_dir)
    models_dir = Path(os.environ.get(MODELS_DIR_ENV) or data_dir / "models")
    base = default_base(getattr(args, "model", None))
    return JobRunner(RunnerConfig(db_url=url, models_dir=models_dir, default_base=base,
                                  cache_dir=getattr(args, "cache_dir", None)))


def default_base(model: str | None) -> str:
    """What `--model auto` serves, named concretely (a version must record a loadable base)."""
    if model and model != "auto":
        return model
    import torch

    from model.loader import HUMANVLM_ID

    return HUMANVLM_ID if torch.cuda.is_available() else "demo"
