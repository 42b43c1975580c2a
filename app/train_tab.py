"""The Train tab (and the Models tab beside it, app/models_tab.py): fine-tune on approved corrections.

Handlers first (plain functions over `Services`), then the layout. Training runs in its own
process (train.jobs.JobRunner); the Train tab follows it by polling once a second (`gr.Timer`):
the job row, its status file, its loss curve and its log. Nothing here touches SQL or tensors.
"""

from __future__ import annotations

import html
import json
import shlex

import gradio as gr
import pandas as pd

from app.guard import ask, audit, md, user_error
from app.models_tab import _base, build_models
from train.jobs import available_corrections, resumable
from train.options import METHODS

POLL_S = 1.0
LOG_LINES = 12
METRICS = [("token_f1", "token F1"), ("bleu4", "BLEU-4 (0-100)"), ("chrf", "chrF (0-100)"),
           ("rouge_l", "ROUGE-L"), ("exact_match", "exact match"), ("edit_distance", "edit distance (lower is better)")]
EVAL_HEADERS = ["metric", "before (base)", "after (new version)", "change"]


def _user_error(exc: Exception):
    raise user_error(exc) from None


def allowed_bases(services) -> list[str]:
    """What a training run may start from: the serving model's base, the demo model, --bases.

    In public mode nothing else is accepted: no typed paths or hub ids (they probe the server)."""
    names = [_base(services), "demo", *services.policy.config.bases]
    return list(dict.fromkeys(names))


def _checked_base(services, base: str | None) -> str | None:
    base = (base or "").strip() or None
    if base is not None and not services.local and base not in allowed_bases(services):
        raise gr.Error(f"Pick a base from the list ({', '.join(allowed_bases(services))}); "
                       "an admin adds more with --bases.")
    return base


# ---- Train tab handlers ------------------------------------------------------------------------


def data_summary(services) -> str:
    if services.store is None:
        return "Training needs the review queue: start the app without `--no-store`."
    counts = available_corrections(services.store, services.jobs.config.split)
    text = (f"**{counts['train'] + counts['heldout']} approved corrections** with photos: "
            f"**{counts['train']}** to train on, **{counts['heldout']}** held out for evaluation")
    if counts["without_photo"]:
        text += f" ({counts['without_photo']} more are known only by URL and cannot be trained on)"
    return text + "."


def _number(value, kind=float):
    """Empty (or 0) means the model's default."""
    return None if value in (None, "") or float(value) == 0 else kind(value)


ADVANCED = ("lora_r", "lora_alpha", "grad_accum", "save_steps", "max_length", "vision_tower", "merge")


def job_settings(services, base, method, epochs, max_steps, lr, batch_size, advanced: dict | None = None) -> dict:
    """The job's settings from the form: empty or 0 means the base model's default."""
    if method not in METHODS:
        raise gr.Error(f"Method is one of {', '.join(METHODS)}.")
    settings = {"base": _checked_base(services, base), "method": method, "epochs": _number(epochs),
                "max_steps": _number(max_steps, int), "lr": _number(lr), "batch_size": _number(batch_size, int)}
    for key, value in (advanced or {}).items():
        if key not in ADVANCED:
            raise gr.Error(f"Unknown training setting {key!r}.")
        if key == "vision_tower":
            settings[key] = value or None
        elif key == "merge":
            settings[key] = bool(value)
        else:
            settings[key] = _number(value, int)
    return {k: v for k, v in settings.items() if v is not None}


def preview_command(services, settings: dict) -> str:
    """The exact `train` command the job will run (the export's and version's folders named)."""
    from train.options import TrainOptions, resolve, to_argv

    settings = {"base": _base(services), **settings}
    try:
        options = TrainOptions(data="EXPORT", out="models/NEW-VERSION", evaluate=True, **settings)
        resolve(options, is_demo=True)  # the same checks the job runs
    except Exception as exc:
        _user_error(exc)
    return "python app.py export --format llava --out EXPORT\npython app.py train " + " ".join(
        shlex.quote(a) for a in to_argv(options))


def start_job(services, identity, base, method, epochs, max_steps, lr, batch_size, advanced=None) -> str:
    from model.zerogpu import on_zerogpu

    if on_zerogpu():
        raise gr.Error("Training cannot run on ZeroGPU (a GPU call lasts minutes at most): export the "
                       "corrections and train on a dedicated GPU; the Train tab shows the commands.",
                       print_exception=False)
    settings = job_settings(services, base, method, epochs, max_steps, lr, batch_size, advanced)
    try:
        job = services.jobs.start(settings, store=services.store)
    except Exception as exc:
        _user_error(exc)
    audit(services, identity, "train", f"job {job.id}", json.dumps(job.options, default=str))
    gr.Info(f"Training job {job.id} started.")
    return f"Job {job.id} queued: exporting the approved corrections, then training."


def cancel_job(services, identity) -> str:
    job = services.jobs.active()
    if job is None:
        raise gr.Error("No training job is running.")
    try:
        services.jobs.cancel(job.id)
    except Exception as exc:
        _user_error(exc)
    audit(services, identity, "cancel", f"job {job.id}")
    return f"Cancelling job {job.id}..."


def resume_job(services, identity) -> str:
    jobs = services.jobs.list(limit=1)
    if not jobs or not resumable(jobs[0]):
        raise gr.Error("The last job has no checkpoint to resume from.")
    try:
        job = services.jobs.resume(jobs[0].id)
    except Exception as exc:
        _user_error(exc)
    audit(services, identity, "train", f"job {job.id}", "resumed")
    return f"Resuming job {job.id} from its last checkpoint."


def _eta(seconds) -> str:
    if seconds is None:
        return "estimating..."
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def progress_html(job, status: dict) -> str:
    """A progress bar with step count, ETA and last loss (plain HTML: nothing user-written in it)."""
    if job is None:
        return ""
    step, total = status.get("step") or 0, status.get("max_steps") or 0
    phase = (status.get("phase") or "starting") if job.status == "running" else \
        "exporting" if job.status == "queued" else job.status
    share = 1.0 if job.status == "finished" else (step / total if total else 0.0)
    parts = [f"{phase}", f"step {step} / {total or '?'}", f"{share:.0%}"]
    if job.active and phase == "training":
        parts.append(f"ETA {_eta(status.get('eta_s'))}")
    if status.get("loss") is not None:
        parts.append(f"loss {status['loss']:.4f}")
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


def loss_frame(points: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({"step": [p["step"] for p in points], "loss": [p["loss"] for p in points]})


def eval_rows(evaluation: dict) -> list[list]:
    before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
    rows = []
    for key, name in METRICS:
        b, a = before.get(key), after.get(key)
        change = f"{a - b:+.4g}" if a is not None and b is not None else ""
        rows.append([name, "" if b is None else b, "" if a is None else a, change])
    return rows


def poll(services, seen: dict):
    """One tick: job status, progress, loss curve, log tail, evaluation table, button states."""
    jobs = services.jobs.list(limit=1)
    job = jobs[0] if jobs else None
    info = services.jobs.progress(job.id, LOG_LINES) if job else {"status": {}, "points": [], "log": ""}
    points = info["points"]
    key = (job.id if job else None, len(points), job.status if job else None)
    plot = loss_frame(points) if key != seen.get("key") else gr.skip()
    table = eval_rows(job.evaluation) if job and job.evaluation and key != seen.get("key") else gr.skip()
    active = bool(job and job.active)
    return (job_markdown(job), progress_html(job, info["status"]), plot, info["log"], table,
            gr.Button(interactive=not active), gr.Button(interactive=active),
            gr.Button(interactive=bool(job and resumable(job))), {"key": key})


# ---- layout ----------------------------------------------------------------------------------


def build_train_tabs(services) -> dict:
    """The Train and Models tabs, inside the app's `gr.Tabs()`; returns them by name."""
    with gr.Tab("Train", id="train") as train_tab:
        summary, timer = _build_train(services)
    with gr.Tab("Models", id="models") as models_tab:
        refresh, outputs = build_models(services)

    # Opening a tab refreshes what may have changed meanwhile (new approvals, new versions).
    def on_train_open(request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "train", request, profile)
        return data_summary(services), gr.Timer(active=True)  # polling starts for admins only

    def on_models_open(request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "versions", request, profile)
        return refresh()

    train_tab.select(on_train_open, None, [summary, timer], api_visibility="private")
    models_tab.select(on_models_open, None, outputs, api_visibility="private")
    return {"train": train_tab, "models": models_tab}


PRIVATE = {"api_visibility": "private"}
UI = {"api_visibility": "undocumented"}  # the documented API is app/api.py


def _build_train(services) -> tuple[gr.Markdown, gr.Timer]:
    import os

    from model.zerogpu import on_zerogpu
    from train.zerogpu import zerogpu_note

    zerogpu = on_zerogpu()
    if zerogpu:  # minutes to hours of training do not fit in a ZeroGPU call
        gr.Markdown(zerogpu_note(base=_base(services), backup_repo=os.environ.get("HUMANVLM_BACKUP_REPO")),
                    elem_id="train-zerogpu")
    seen = gr.State({})
    with gr.Row():
        summary = gr.Markdown(elem_id="train-data")
        refresh_btn = gr.Button("Refresh counts", size="sm", scale=0)
    with gr.Row():
        base = gr.Dropdown(allowed_bases(services), value=_base(services), allow_custom_value=services.local,
                           label="Base model" + (" (a hub id, a folder or 'demo')" if services.local else ""), scale=2)
        method = gr.Radio(list(METHODS), value="lora", label="Method", scale=2)
    with gr.Row():
        epochs = gr.Number(value=None, label="Epochs (0 = the model's default)", elem_id="train-epochs")
        max_steps = gr.Number(value=None, precision=0, label="Max steps (0 = by epochs)", elem_id="train-max-steps")
        lr = gr.Number(value=None, label="Learning rate (0 = default)")
        batch = gr.Number(value=None, precision=0, label="Batch size (0 = default)", elem_id="train-batch")
    with gr.Accordion("More settings (empty = the base model's default)", open=False):
        with gr.Row():
            lora_r = gr.Number(value=None, precision=0, label="LoRA rank")
            lora_alpha = gr.Number(value=None, precision=0, label="LoRA alpha")
            grad_accum = gr.Number(value=None, precision=0, label="Gradient accumulation")
            save_steps = gr.Number(value=None, precision=0, label="Checkpoint every N steps", elem_id="train-save-steps")
        with gr.Row():
            max_length = gr.Number(value=None, precision=0, label="Cutoff length (tokens)")
            vision = gr.Radio(["lora", "frozen"], value=None, label="Vision tower (LoRA or frozen)")
            merge = gr.Checkbox(label="Also save a merged model")
        preview_btn = gr.Button("Preview command", size="sm", elem_id="train-preview")
        command = gr.Code(label="The command this job runs", language="shell", interactive=False,
                          elem_id="train-command")
    advanced = [lora_r, lora_alpha, grad_accum, save_steps, max_length, vision, merge]
    with gr.Row(visible=not zerogpu):
        start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="train-cancel")
        resume_btn = gr.Button("Resume", elem_id="train-resume")
    message = gr.Markdown(elem_id="train-message")
    job_md = gr.Markdown(elem_id="train-job")
    bar = gr.HTML(elem_id="train-bar")
    with gr.Row():
        plot = gr.LinePlot(loss_frame([]), x="step", y="loss", title="Training loss", height=280,
                           elem_id="train-loss", scale=1)
        table = gr.Dataframe(headers=EVAL_HEADERS, value=eval_rows({}), label="Held-out evaluation",
                             interactive=False, elem_id="train-eval", scale=1)
    log_box = gr.Textbox(label="Log (last lines)", lines=LOG_LINES, max_lines=LOG_LINES, autoscroll=True,
                         elem_id="train-log")
    outputs = [job_md, bar, plot, log_box, table, start_btn, cancel_btn, resume_btn, seen]

    def on_tick(seen: dict, request: gr.Request, profile: gr.OAuthProfile | None):
        if not services.policy.allows(services.policy.identify(request, profile), "train"):
            return tuple(gr.skip() for _ in outputs)  # polls from other roles learn nothing
        return poll(services, seen)

    def on_summary(request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "train", request, profile)
        return data_summary(services)

    def on_start(base: str, method: str, epochs: float, max_steps: float, lr: float, batch: float,
                 lora_r: float, lora_alpha: float, grad_accum: float, save_steps: float, max_length: float,
                 vision: str, merge: bool, request: gr.Request, profile: gr.OAuthProfile | None):
        identity = ask(services, "train", request, profile)
        more = dict(zip(ADVANCED, (lora_r, lora_alpha, grad_accum, save_steps, max_length, vision, merge)))
        return start_job(services, identity, base, method, epochs, max_steps, lr, batch, more)

    def on_preview(base: str, method: str, epochs: float, max_steps: float, lr: float, batch: float,
                   lora_r: float, lora_alpha: float, grad_accum: float, save_steps: float, max_length: float,
                   vision: str, merge: bool, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "train", request, profile)
        more = dict(zip(ADVANCED, (lora_r, lora_alpha, grad_accum, save_steps, max_length, vision, merge)))
        return preview_command(services, job_settings(services, base, method, epochs, max_steps, lr, batch, more))

    def on_cancel(request: gr.Request, profile: gr.OAuthProfile | None):
        return cancel_job(services, ask(services, "cancel", request, profile))

    def on_resume(request: gr.Request, profile: gr.OAuthProfile | None):
        return resume_job(services, ask(services, "train", request, profile))

    timer = gr.Timer(POLL_S, active=False)
    timer.tick(on_tick, [seen], outputs, show_progress="hidden", **PRIVATE)
    refresh_btn.click(on_summary, None, summary, **PRIVATE)
    form = [base, method, epochs, max_steps, lr, batch, *advanced]
    start_btn.click(on_start, form, message, api_name="ui_train_start", **UI)
    preview_btn.click(on_preview, form, command, api_name="ui_train_preview", **UI)
    cancel_btn.click(on_cancel, None, message, api_name="ui_train_cancel", **UI)
    resume_btn.click(on_resume, None, message, api_name="ui_train_resume", **UI)
    return summary, timer
