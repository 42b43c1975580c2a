"""What the Train tab shows of jobs: the current job, its progress bar, its loss curves (training
and held-out), its before/after scores, and the list of past jobs. Plain functions of job
records and the files a run writes (train.progress); nothing here starts or stops anything."""

from __future__ import annotations

import html
import pandas as pd

from app.guard import md
from train.jobs import resumable
from train.jobstore import utcnow

METRICS = [("token_f1", "token F1"), ("bleu4", "BLEU-4 (0-100)"), ("chrf", "chrF (0-100)"),
           ("rouge_l", "ROUGE-L"), ("exact_match", "exact match"), ("edit_distance", "edit distance (lower is better)")]
EVAL_HEADERS = ["metric", "before (base)", "after (new version)", "change"]
JOB_HEADERS = ["id", "status", "base", "method", "version", "started (UTC)", "duration", "note"]
TRAIN, HELDOUT = "train", "held-out"  # the loss plot's two series
COLORS = {TRAIN: "#f97316", HELDOUT: "#2563eb"}


def clock(seconds) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def progress_html(job, status: dict) -> str:
    """A progress bar with step count, ETA and last losses (plain HTML: nothing user-written in it)."""
    if job is None:
        return ""
    step, total = status.get("step") or 0, status.get("max_steps") or 0
    phase = (status.get("phase") or "starting") if job.status == "running" else \
        "exporting" if job.status == "queued" else job.status
    share = 1.0 if job.status == "finished" else (step / total if total else 0.0)
    parts = [f"{phase}", f"step {step} / {total or '?'}", f"{share:.0%}"]
    if job.active and phase == "training":
        parts.append(f"ETA {'estimating...' if status.get('eta_s') is None else clock(status['eta_s'])}")
    if status.get("loss") is not None:
        parts.append(f"loss {status['loss']:.4f}")
    if status.get("eval_loss") is not None:
        parts.append(f"held-out loss {status['eval_loss']:.4f}")
    return (f'<div id="train-progress" data-status="{html.escape(job.status)}">'
            f'<div style="background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden">'
            f'<div style="background:#f97316;height:14px;width:{share * 100:.1f}%"></div></div>'
            f'<div style="margin-top:4px">{html.escape(" · ".join(parts))}</div></div>')


def job_markdown(job) -> str:
    if job is None:
        return "No training job yet."
    opts = job.options
    text = (f"**Job {job.id}: {job.status}** · base {md(opts.get('base'))} · {md(opts.get('method'))}"
            f"{f' · attempt {job.attempts}' if job.attempts > 1 else ''}")
    if job.status == "finished":
        text += f"\n\nNew version {md(job.version)}: serve it from the **Models** tab."
    if job.error:
        text += f"\n\n**{'Note' if job.status == 'finished' else 'Reason'}:** {md(job.error)}"
    if resumable(job):
        text += "\n\nIt has a checkpoint: **Resume** continues from it."
    elif job.status in ("interrupted", "cancelled", "failed"):
        every = opts.get("save_steps")
        text += (f"\n\n**Resume** is not available: the job stopped before its first checkpoint "
                 f"(one every {every} steps; set a smaller interval under *More settings*)." if every else
                 "\n\n**Resume** is not available: the job left no checkpoint.")
    return text


def loss_frame(points: list[dict], eval_points: list[dict] = ()) -> pd.DataFrame:
    """Both loss curves in one long frame: the plot colours them by `split`.

    Each series also has a row without a loss (drawn as nothing): Gradio's plot fixes its series
    (its colour scale's domain) when the chart is built, from the first frame it gets, so both
    must be there from the start for the held-out curve to be drawn once its points arrive."""
    rows = [(p["step"], p["loss"], TRAIN) for p in points] + [(p["step"], p["eval_loss"], HELDOUT)
                                                               for p in eval_points]
    rows += [(None, None, TRAIN), (None, None, HELDOUT)]
    return pd.DataFrame(rows, columns=["step", "loss", "split"]).astype({"step": "float64", "loss": "float64",
                                                                         "split": "str"})


def eval_rows(evaluation: dict) -> list[list]:
    before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
    rows = []
    for key, name in METRICS:
        b, a = before.get(key), after.get(key)
        change = f"{a - b:+.4g}" if a is not None and b is not None else ""
        rows.append([name, "" if b is None else b, "" if a is None else a, change])
    return rows


def jobs_frame(jobs: list) -> pd.DataFrame:
    """Past and present jobs, newest first (as JobRunner.list returns them)."""
    rows = []
    for job in jobs:
        started = job.started_at or job.created_at
        ended = job.finished_at or (utcnow() if job.active and job.started_at else None)
        rows.append([job.id, job.status, job.options.get("base"), job.options.get("method"), job.version or "",
                     started.strftime("%Y-%m-%d %H:%M") if started else "",
                     clock((ended - job.started_at).total_seconds()) if ended and job.started_at else "",
                     job.error or ""])
    return pd.DataFrame(rows, columns=JOB_HEADERS)
