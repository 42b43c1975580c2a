"""How a training run reports progress to whoever watches its output folder.

The training process writes two files under its output folder's `training/` (the training
state, see train.output); the web app reads them (it never talks to the process):
- `status.json`: replaced atomically, at most once a second: phase, step, max_steps, ETA,
  the last loss, and on failure the reason;
- `progress.jsonl`: one line per logging step (step, loss, learning rate, epoch, seconds):
  the loss curve; and one line per evaluation on the held-out split (step, eval_loss, epoch,
  seconds): the eval-loss curve. A resumed run truncates it back to its checkpoint's step and appends.
Only the main process writes (under `accelerate launch` every rank runs this code).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

STATUS_FILE = "training/status.json"  # relative to the output folder
PROGRESS_FILE = "training/progress.jsonl"
PHASES = ("loading", "training", "saving", "evaluating", "finished", "failed")
MIN_INTERVAL_S = 1.0


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    os.replace(tmp, path)


def read_status(out_dir: str | Path) -> dict:
    path = Path(out_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_progress(out_dir: str | Path) -> list[dict]:
    """The training-loss curve so far."""
    return [p for p in read_points(out_dir) if "loss" in p]


def read_eval_progress(out_dir: str | Path) -> list[dict]:
    """The held-out-loss curve so far (empty when nothing is held out)."""
    return [p for p in read_points(out_dir) if "eval_loss" in p]


def read_points(out_dir: str | Path) -> list[dict]:
    """Every point written so far, training and held-out, in the order they were logged (a
    half-written last line is ignored)."""
    path = Path(out_dir) / PROGRESS_FILE
    points = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return points
    for line in lines:
        try:
            points.append(json.loads(line))
        except ValueError:
            continue
    return points


class StatusWriter:
    """status.json for one run; a no-op on non-main processes."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.path = out_dir / STATUS_FILE
        self.enabled = enabled
        self.state: dict = {}

    def update(self, **fields) -> None:
        if not self.enabled:
            return
        self.state.update(fields, updated_at=time.time(), pid=os.getpid())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.state)

    def fail(self, exc: BaseException) -> None:
        self.update(phase="failed", error=failure_reason(exc))


def failure_reason(exc: BaseException) -> str:
    """One line a user can act on; out-of-memory gets advice."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    if getattr(exc, "user_facing", False):
        text = str(exc).splitlines()[0][:500]
    if "out of memory" in text.lower() or isinstance(exc, MemoryError):
        return (f"out of memory ({text}); lower --batch-size (raise --grad-accum to keep the global batch), "
                "or use --method qlora")
    return text


def make_callback(out_dir: Path, status: StatusWriter):
    """A transformers TrainerCallback writing status.json and progress.jsonl."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self):
            self.began = self.last_write = 0.0
            self.first_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.began, self.first_step = time.time(), state.global_step
            if state.is_world_process_zero:
                _truncate_progress(out_dir, state.global_step)
                status.update(phase="training", step=state.global_step, max_steps=state.max_steps,
                              started_at=self.began, eta_s=None)

        def on_step_end(self, args, state, control, **kwargs):
            now = time.time()
            if not state.is_world_process_zero or now - self.last_write < MIN_INTERVAL_S:
                return
            self.last_write = now
            done = state.global_step - self.first_step
            eta = (now - self.began) / done * (state.max_steps - state.global_step) if done else None
            status.update(step=state.global_step, max_steps=state.max_steps, elapsed_s=now - self.began, eta_s=eta)

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                status.update(step=state.global_step, max_steps=state.max_steps, eta_s=0,
                              elapsed_s=time.time() - self.began)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            if "eval_loss" in logs:  # Trainer.evaluate logs its metrics, prefixed eval_
                point = {"step": state.global_step, "eval_loss": float(logs["eval_loss"]),
                         "epoch": logs.get("epoch"), "time": time.time()}
                _append(out_dir, point)
                status.update(eval_loss=point["eval_loss"])
            if "loss" not in logs:
                return
            point = {"step": state.global_step, "loss": float(logs["loss"]), "lr": logs.get("learning_rate"),
                     "epoch": logs.get("epoch"), "grad_norm": logs.get("grad_norm"),
                     "token_accuracy": logs.get("mean_token_accuracy"), "time": time.time()}
            _append(out_dir, point)
            status.update(loss=point["loss"])

    return ProgressCallback()


def _append(out_dir: Path, point: dict) -> None:
    (out_dir / PROGRESS_FILE).parent.mkdir(parents=True, exist_ok=True)
    with (out_dir / PROGRESS_FILE).open("a") as fh:
        fh.write(json.dumps(point) + "\n")


def _truncate_progress(out_dir: Path, step: int) -> None:
    """On resume, drop points logged after the checkpoint: the curve continues from there."""
    path = out_dir / PROGRESS_FILE
    if not path.exists():
        return
    kept = [p for p in read_points(out_dir) if p.get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(p) + "\n" for p in kept))
    os.replace(tmp, path)
