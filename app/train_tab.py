"""The Train tab (and the Models tab beside it, app/models_tab.py): fine-tune on approved corrections.

Handlers first (plain functions over `Services`), then the layout. Training runs in its own
process (train.jobs.JobRunner); the Train tab follows it by polling once a second (`gr.Timer`):
the job row, its status file, its loss curves, its log and the list of past jobs (rendered by
app/train_status.py). Nothing here touches SQL or tensors.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import gradio as gr

from app.guard import ask, audit, md, user_error
from app.models_tab import _base, build_models
from app.train_status import (COLORS, EVAL_HEADERS, JOB_HEADERS, eval_rows, job_markdown, jobs_frame, loss_frame,
                              progress_html)
from train.jobs import MAX_HELDOUT, available_corrections, looks_demo, resumable
from train.options import DTYPES, LORA_TARGETS, METHODS, REPORTERS, SCHEDULERS, defaults_for, describe_defaults

__all__ = ["build_train_tabs", "job_markdown", "start_job", "cancel_job"]

POLL_S = 1.0
LOG_LINES = 12
JOBS_SHOWN = 20
FRESH = "fresh"  # the data dropdown's value for "all approved corrections (fresh export)"


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


def defaults_markdown(services, base: str | None) -> str:
    """The chosen base's recipe (train.options.ModelDefaults): what an empty field means."""
    base = _checked_base(services, base) or _base(services)
    return f"**Defaults for {md(base)}** · {describe_defaults(defaults_for(base))}"


# ---- what to train on ----------------------------------------------------------------------------


def export_choices(services) -> list[tuple[str, str]]:
    """The data dropdown: a fresh export of every approval, then the Export tab's exports of
    approved items, newest first (only these are accepted by name: never a typed path)."""
    from annotate.export import exports_dir, list_exports

    found = list_exports(exports_dir(services.store.data_dir), status="approved") if services.store else []
    return [("all approved corrections (fresh export)", FRESH)] + [(e.label(), e.name) for e in found]


def training_source(services, choice: str | None, heldout) -> dict:
    """`JobRunner.start`'s data= and heldout= from the form: a listed export by name, or a fresh
    export holding out `heldout` of the approvals (empty: the runner's default)."""
    from annotate.export import exports_dir, list_exports

    share = None if heldout in (None, "") else float(heldout)
    if share is not None and not 0 <= share <= MAX_HELDOUT:
        raise gr.Error(f"The held-out share is between 0 and {MAX_HELDOUT:g} (0: hold nothing out, no evaluation).")
    if choice in (None, "", FRESH):
        return {"data": None, "heldout": share}
    if share is not None:
        raise gr.Error("The held-out share applies to a fresh export; a chosen export keeps its own split.")
    root = exports_dir(services.store.data_dir) if services.store else None
    for found in list_exports(root, status="approved") if root else []:
        if found.name == choice:
            return {"data": str(found.path), "heldout": None}
    raise gr.Error(f"No export named {choice!r}: pick one from the list (the Export tab makes them).")


def data_summary(services) -> str:
    if services.store is None:
        return "Training needs the review queue: start the app without `--no-store`."
    counts = available_corrections(services.store, services.jobs.config.split)
    text = (f"**{counts['train'] + counts['heldout']} approved corrections** with photos: "
            f"**{counts['train']}** to train on, **{counts['heldout']}** held out for evaluation")
    if counts["without_photo"]:
        text += f" ({counts['without_photo']} more are known only by URL and cannot be trained on)"
    return text + " in a fresh export."


# ---- the form ------------------------------------------------------------------------------------


def _number(value, kind=float):
    """Empty (or 0) means the model's default."""
    return None if value in (None, "") or float(value) == 0 else kind(value)


NUMBERS = ("lora_r", "lora_alpha", "grad_accum", "save_steps", "max_length")
CHOICES = {"vision_tower": ("lora", "frozen"), "lr_scheduler_type": SCHEDULERS, "dtype": DTYPES,
           "report_to": REPORTERS}
ADVANCED = NUMBERS + ("vision_tower", "merge", "lora_targets", "lr_scheduler_type", "dtype", "report_to")


def _targets(value) -> str | None:
    """LoRA target modules from a multiselect (a list) or the API (comma-separated); empty: all."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in LORA_TARGETS + ("all",)]
    if unknown:
        raise gr.Error(f"Unknown LoRA target {', '.join(map(repr, unknown))}: pick from {', '.join(LORA_TARGETS)}.")
    return ",".join(names) if names and "all" not in names else None


def job_settings(services, base, method, epochs, max_steps, lr, batch_size, advanced: dict | None = None) -> dict:
    """The job's settings from the form: empty or 0 means the base model's default."""
    if method not in METHODS:
        raise gr.Error(f"Method is one of {', '.join(METHODS)}.")
    settings = {"base": _checked_base(services, base), "method": method, "epochs": _number(epochs),
                "max_steps": _number(max_steps, int), "lr": _number(lr), "batch_size": _number(batch_size, int)}
    for key, value in (advanced or {}).items():
        if key not in ADVANCED:
            raise gr.Error(f"Unknown training setting {key!r}.")
        if key in CHOICES:
            if value and value not in CHOICES[key]:
                raise gr.Error(f"{key.replace('_', ' ').capitalize()} is one of {', '.join(CHOICES[key])}.")
            settings[key] = value or None
        elif key == "merge":
            settings[key] = bool(value)
        elif key == "lora_targets":
            settings[key] = _targets(value)
        else:
            settings[key] = _number(value, int)
    return {k: v for k, v in settings.items() if v is not None}


def preview_command(services, settings: dict, source: dict | None = None) -> str:
    """The exact commands the job will run (the export's and version's folders named)."""
    from train.options import TrainOptions, resolve, to_argv

    settings = {"base": _base(services), **settings}
    source = source or {"data": None, "heldout": None}
    data = f"DATA_DIR/exports/{Path(source['data']).name}" if source["data"] else "EXPORT"
    try:
        options = TrainOptions(data=data, out="models/NEW-VERSION", evaluate=True, **settings)
        resolve(options, is_demo=looks_demo(options.base))  # the same checks the job runs
    except Exception as exc:
        _user_error(exc)
    train = "python app.py train " + " ".join(shlex.quote(a) for a in to_argv(options))
    if source["data"]:
        return train
    split = "" if source["heldout"] is None else f" --split {1 - source['heldout']:.6g}"
    return f"python app.py export --format llava --out EXPORT{split}\n{train}"


def start_job(services, identity, base, method, epochs, max_steps, lr, batch_size, advanced=None,
              source: dict | None = None) -> str:
    from model.zerogpu import on_zerogpu

    if on_zerogpu():
        raise gr.Error("Training cannot run on ZeroGPU (a GPU call lasts minutes at most): export the "
                       "corrections and train on a dedicated GPU; the Train tab shows the commands.",
                       print_exception=False)
    settings = job_settings(services, base, method, epochs, max_steps, lr, batch_size, advanced)
    source = source or {"data": None, "heldout": None}
    try:
        job = services.jobs.start(settings, store=services.store, **source)
    except Exception as exc:
        _user_error(exc)
    audit(services, identity, "train", f"job {job.id}", json.dumps(job.options, default=str))
    gr.Info(f"Training job {job.id} started.")
    what = "exporting the approved corrections, then training" if source["data"] is None else \
        f"training on the export {Path(source['data']).name}"
    return f"Job {job.id} queued: {what}."


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


def poll(services, seen: dict):
    """One tick: job status, progress, loss curves, log tail, scores, past jobs, button states."""
    jobs = services.jobs.list(limit=JOBS_SHOWN)
    job = jobs[0] if jobs else None
    info = services.jobs.progress(job.id, LOG_LINES) if job else {"status": {}, "points": [], "log": ""}
    points, eval_points = info["points"], info.get("eval_points", [])
    key = (job.id if job else None, len(points), len(eval_points), job.status if job else None)
    changed = key != seen.get("key")
    plot = loss_frame(points, eval_points) if changed else gr.skip()
    table = eval_rows(job.evaluation) if job and job.evaluation and changed else gr.skip()
    listing = jobs_frame(jobs) if changed else gr.skip()
    active = bool(job and job.active)
    return (job_markdown(job), progress_html(job, info["status"]), plot, info["log"], table, listing,
            gr.Button(interactive=not active), gr.Button(interactive=active),
            gr.Button(interactive=bool(job and resumable(job))), {"key": key})


# ---- layout ----------------------------------------------------------------------------------


def build_train_tabs(services) -> dict:
    """The Train and Models tabs, inside the app's `gr.Tabs()`; returns them by name."""
    with gr.Tab("Train", id="train") as train_tab:
        opened, timer = _build_train(services)
    with gr.Tab("Models", id="models") as models_tab:
        refresh, outputs = build_models(services)

    # Opening a tab refreshes what may have changed meanwhile (new approvals, exports, versions).
    def on_train_open(base: str, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "train", request, profile)
        return (*opened_values(services, base), gr.Timer(active=True))  # polling starts for admins only

    def on_models_open(request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "versions", request, profile)
        return refresh()

    train_tab.select(on_train_open, opened[:1], [*opened[1:], timer], api_visibility="private")
    models_tab.select(on_models_open, None, outputs, api_visibility="private")
    return {"train": train_tab, "models": models_tab}


def opened_values(services, base: str):
    """The data summary, the export list (keeping a still-listed choice), the base's defaults, past jobs."""
    return (data_summary(services), gr.Dropdown(choices=export_choices(services)),
            defaults_markdown(services, base), jobs_frame(services.jobs.list(limit=JOBS_SHOWN)))


PRIVATE = {"api_visibility": "private"}
UI = {"api_visibility": "undocumented"}  # the documented API is app/api.py


def _build_train(services) -> tuple[list, gr.Timer]:
    """The form, its buttons and the job view; returns [base, the outputs of opening the tab] and the timer."""
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
        refresh_btn = gr.Button("Refresh", size="sm", scale=0)
    with gr.Row():
        data = gr.Dropdown(export_choices(services), value=FRESH, label="Train on", scale=3, elem_id="train-source")
        heldout = gr.Slider(0, MAX_HELDOUT, value=round(1 - services.jobs.config.split, 6), step=0.05, scale=1,
                            label="Held-out share (0: none, no evaluation)", elem_id="train-heldout")
    with gr.Row():
        base = gr.Dropdown(allowed_bases(services), value=_base(services), allow_custom_value=services.local,
                           label="Base model" + (" (a hub id, a folder or 'demo')" if services.local else ""), scale=2)
        method = gr.Radio(list(METHODS), value="lora", label="Method", scale=2)
    defaults = gr.Markdown(elem_id="train-defaults")
    with gr.Row():
        epochs = gr.Number(value=None, label="Epochs (0 = the model's default)", elem_id="train-epochs")
        max_steps = gr.Number(value=None, precision=0, label="Max steps (0 = by epochs)", elem_id="train-max-steps")
        lr = gr.Number(value=None, label="Learning rate (0 = default)")
        batch = gr.Number(value=None, precision=0, label="Batch size (0 = default)", elem_id="train-batch")
    advanced, preview_btn, command = _more_settings()
    with gr.Row(visible=not zerogpu):
        start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="train-cancel")
        resume_btn = gr.Button("Resume", elem_id="train-resume")
    message = gr.Markdown(elem_id="train-message")
    job_md = gr.Markdown(elem_id="train-job")
    bar = gr.HTML(elem_id="train-bar")
    with gr.Row():
        # No legend: Gradio draws it empty when the first frame has no points (the title names the colours).
        plot = gr.LinePlot(loss_frame([]), x="step", y="loss", color="split", color_map=COLORS, colors_in_legend=[],
                           x_axis_format="d", title="Loss: training (orange), held-out (blue)", height=280,
                           elem_id="train-loss", scale=1)
        table = gr.Dataframe(headers=EVAL_HEADERS, value=eval_rows({}), label="Held-out evaluation",
                             interactive=False, elem_id="train-eval", scale=1)
    log_box = gr.Textbox(label="Log (last lines)", lines=LOG_LINES, max_lines=LOG_LINES, autoscroll=True,
                         elem_id="train-log")
    jobs = gr.Dataframe(jobs_frame([]), headers=JOB_HEADERS, label="Training jobs (newest first)",
                        interactive=False, elem_id="train-jobs")
    outputs = [job_md, bar, plot, log_box, table, jobs, start_btn, cancel_btn, resume_btn, seen]
    form = [base, method, epochs, max_steps, lr, batch, *advanced, heldout, data]
    _wire(services, form, command, message,
          {"preview": preview_btn, "start": start_btn, "cancel": cancel_btn, "resume": resume_btn})
    timer = gr.Timer(POLL_S, active=False)
    timer.tick(_on_tick(services, outputs), [seen], outputs, show_progress="hidden", **PRIVATE)
    opened = [base, summary, data, defaults, jobs]

    def on_refresh(base: str, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "train", request, profile)
        return opened_values(services, base)

    def on_base(base: str, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "train", request, profile)
        return defaults_markdown(services, base)

    def on_source(choice: str, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "train", request, profile)
        return gr.Slider(interactive=choice == FRESH)  # a chosen export keeps its own split

    refresh_btn.click(on_refresh, [base], opened[1:], **PRIVATE)
    base.change(on_base, [base], defaults, show_progress="hidden", **PRIVATE)
    data.change(on_source, [data], heldout, show_progress="hidden", **PRIVATE)
    return opened, timer


def _more_settings():
    """The accordion of less common settings (empty = the base's default); returns its inputs in
    ADVANCED's order, the preview button and the command box."""
    with gr.Accordion("More settings (empty = the base model's default)", open=False):
        with gr.Row():
            lora_r = gr.Number(value=None, precision=0, label="LoRA rank")
            lora_alpha = gr.Number(value=None, precision=0, label="LoRA alpha")
            grad_accum = gr.Number(value=None, precision=0, label="Gradient accumulation")
            save_steps = gr.Number(value=None, precision=0, label="Checkpoint every N steps",
                                   elem_id="train-save-steps")
        with gr.Row():
            max_length = gr.Number(value=None, precision=0, label="Cutoff length (tokens)")
            vision = gr.Radio(["lora", "frozen"], value=None, label="Vision tower (LoRA or frozen)")
            merge = gr.Checkbox(label="Also save a merged model")
        with gr.Row():
            targets = gr.Dropdown(list(LORA_TARGETS), value=[], multiselect=True, elem_id="train-lora-targets",
                                  label="LoRA target modules (empty = all linear layers)", scale=2)
            scheduler = gr.Dropdown(list(SCHEDULERS), value=SCHEDULERS[0], label="Learning-rate scheduler",
                                    elem_id="train-scheduler")
            dtype = gr.Dropdown(list(DTYPES), value="auto", label="Precision (dtype)", elem_id="train-dtype")
            report = gr.Dropdown(list(REPORTERS), value="auto", label="Report to", elem_id="train-report-to")
        preview_btn = gr.Button("Preview command", size="sm", elem_id="train-preview")
        command = gr.Code(label="The command this job runs", language="shell", interactive=False,
                          elem_id="train-command")
    advanced = [lora_r, lora_alpha, grad_accum, save_steps, max_length, vision, merge, targets, scheduler, dtype,
                report]
    return advanced, preview_btn, command


def _form_values(values: tuple) -> tuple[tuple, dict, dict]:
    """The form's values, in `form`'s order, as (main six, advanced settings, data source)."""
    main, more, (heldout, data) = values[:6], values[6:6 + len(ADVANCED)], values[6 + len(ADVANCED):]
    fresh = data in (None, "", FRESH)  # the slider applies to a fresh export only (disabled otherwise)
    return main, dict(zip(ADVANCED, more)), {"choice": data, "heldout": heldout if fresh else None}


def _wire(services, form, command, message, buttons) -> None:
    def on_start(base: str, method: str, epochs: float, max_steps: float, lr: float, batch: float,
                 lora_r: float, lora_alpha: float, grad_accum: float, save_steps: float, max_length: float,
                 vision: str, merge: bool, lora_targets: list[str], lr_scheduler_type: str, dtype: str,
                 report_to: str, heldout: float | None, data: str, request: gr.Request,
                 profile: gr.OAuthProfile | None):
        identity = ask(services, "train", request, profile)
        main, more, source = _form_values((base, method, epochs, max_steps, lr, batch, lora_r, lora_alpha, grad_accum,
                                           save_steps, max_length, vision, merge, lora_targets, lr_scheduler_type,
                                           dtype, report_to, heldout, data))
        return start_job(services, identity, *main, more, training_source(services, **source))

    def on_preview(base: str, method: str, epochs: float, max_steps: float, lr: float, batch: float,
                   lora_r: float, lora_alpha: float, grad_accum: float, save_steps: float, max_length: float,
                   vision: str, merge: bool, lora_targets: list[str], lr_scheduler_type: str, dtype: str,
                   report_to: str, heldout: float | None, data: str, request: gr.Request,
                   profile: gr.OAuthProfile | None):
        ask(services, "train", request, profile)
        main, more, source = _form_values((base, method, epochs, max_steps, lr, batch, lora_r, lora_alpha, grad_accum,
                                           save_steps, max_length, vision, merge, lora_targets, lr_scheduler_type,
                                           dtype, report_to, heldout, data))
        return preview_command(services, job_settings(services, *main, more), training_source(services, **source))

    def on_cancel(request: gr.Request, profile: gr.OAuthProfile | None):
        return cancel_job(services, ask(services, "cancel", request, profile))

    def on_resume(request: gr.Request, profile: gr.OAuthProfile | None):
        return resume_job(services, ask(services, "train", request, profile))

    buttons["start"].click(on_start, form, message, api_name="ui_train_start", **UI)
    buttons["preview"].click(on_preview, form, command, api_name="ui_train_preview", **UI)
    buttons["cancel"].click(on_cancel, None, message, api_name="ui_train_cancel", **UI)
    buttons["resume"].click(on_resume, None, message, api_name="ui_train_resume", **UI)


def _on_tick(services, outputs):
    def on_tick(seen: dict, request: gr.Request, profile: gr.OAuthProfile | None):
        if not services.policy.allows(services.policy.identify(request, profile), "train"):
            return tuple(gr.skip() for _ in outputs)  # polls from other roles learn nothing
        return poll(services, seen)

    return on_tick
