"""The Models tab: the versions training produced, which one the demo serves, and two versions
compared on one photo. Only listed versions are accepted by name (never a typed path)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from app.components import PhotoInput
from app.guard import ask, audit, md, user_error
from model.generate import GenerationSettings
from model.images import ImageError, load_image
from model.prompts import PRESETS
from train.versions import BASE_CHOICE, compare_captions, config_for, list_versions, version_choices

GPU = {"concurrency_id": "gpu", "concurrency_limit": 1}  # shared with the Caption & Chat tab
PRIVATE = {"api_visibility": "private"}
UI = {"api_visibility": "undocumented"}  # the documented API is app/api.py


def _user_error(exc: Exception):
    raise user_error(exc) from None


def version_by_name(services, name: str) -> str:
    """The dropdown value of a version named by the caller; only listed versions are accepted."""
    for label, value in version_choices(services.jobs.config.models_dir, _base(services)):
        if name in (value, label) or (value != BASE_CHOICE and Path(value).name == name):
            return value
    raise gr.Error(f"No version named {name!r}; list them with /versions.")


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def _base(services) -> str:
    return services.jobs.config.default_base


def versions_frame(services) -> pd.DataFrame:
    rows = []
    for v in list_versions(services.jobs.config.models_dir):
        before, after = v.evaluation("before"), v.evaluation("after")
        f1 = lambda run: _round(run["metrics"]["token_f1"]) if run else "not evaluated"  # noqa: E731
        rows.append({"version": v.version, "base": v.base, "method": v.method + (" (merged)" if v.merged else ""),
                     "data": f"{v.data.get('train_items', '?')} train / {v.data.get('heldout_items', '?')} held-out",
                     "token F1 before": f1(before), "token F1 after": f1(after),
                     "final loss": _round(v.metrics.get("final_loss")), "created": v.created_at.replace("T", " ")[:16]})
    return pd.DataFrame(rows, columns=["version", "base", "method", "data", "token F1 before", "token F1 after",
                                       "final loss", "created"])


def refresh_models(services):
    choices = version_choices(services.jobs.config.models_dir, _base(services))
    newest = choices[1][1] if len(choices) > 1 else BASE_CHOICE
    return (versions_frame(services), gr.Dropdown(choices=choices, value=newest),
            gr.Dropdown(choices=choices, value=BASE_CHOICE), gr.Dropdown(choices=choices, value=newest), serving(services))


def serving(services) -> str:
    info = services.slot.get().info
    return f"Serving now: **{md(info.describe())}** · version {md(info.version)}"


def use_in_demo(services, identity, choice) -> str:
    if not choice:
        raise gr.Error("Pick a version first.")
    choice = version_by_name(services, choice)
    try:
        config = config_for(choice, services.slot.config, _base(services))
        services.slot.swap(config)
    except Exception as exc:
        _user_error(exc)
    audit(services, identity, "use_version", Path(choice).name if choice != BASE_CHOICE else BASE_CHOICE)
    gr.Info("The Caption & Chat tab now uses this version.")
    return serving(services)


def compare(services, photo, choice_a, choice_b, preset):
    if not photo:
        raise gr.Error("Upload a photo to caption with both versions.")
    if not choice_a or not choice_b:
        raise gr.Error("Pick two versions to compare.")
    choice_a, choice_b = version_by_name(services, choice_a), version_by_name(services, choice_b)
    try:
        image = load_image(photo)
        configs = [config_for(c, services.slot.config, _base(services)) for c in (choice_a, choice_b)]
        captions = compare_captions(services.slot, configs, image, PRESETS[preset], GenerationSettings(max_new_tokens=200))
    except ImageError as exc:
        raise gr.Error(str(exc)) from None
    except Exception as exc:
        _user_error(exc)
    return captions[0], captions[1]


# ---- layout ----------------------------------------------------------------------------------


def build_models(services):
    current = gr.Markdown(elem_id="models-serving")
    table = gr.Dataframe(label="Trained versions", interactive=False, elem_id="models-table")
    with gr.Row():
        chosen = gr.Dropdown(choices=[], label="Version", scale=3, elem_id="models-choice")
        use_btn = gr.Button("Use in demo", variant="primary", scale=1, elem_id="models-use")
        refresh_btn = gr.Button("Refresh", scale=1)
    gr.Markdown("### Compare two versions on one photo")
    with gr.Row():
        with gr.Column(scale=2):
            photo = PhotoInput(label="Photo", type="filepath", height=300, elem_id="compare-photo")
            preset = gr.Dropdown(list(PRESETS), value="detailed", label="Preset")
        with gr.Column(scale=3):
            with gr.Row():
                a = gr.Dropdown(choices=[], label="Version A", elem_id="compare-a")
                b = gr.Dropdown(choices=[], label="Version B", elem_id="compare-b")
            compare_btn = gr.Button("Compare", elem_id="compare-btn")
            with gr.Row():
                cap_a = gr.Textbox(label="Caption A", lines=6, elem_id="compare-out-a")
                cap_b = gr.Textbox(label="Caption B", lines=6, elem_id="compare-out-b")
    refresh = lambda: refresh_models(services)  # noqa: E731
    outputs = [table, chosen, a, b, current]

    def on_refresh(request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "versions", request, profile)
        return refresh()

    def on_use(choice: str, request: gr.Request, profile: gr.OAuthProfile | None):
        return use_in_demo(services, ask(services, "use_version", request, profile), choice)

    def on_compare(photo: str, choice_a: str, choice_b: str, preset: str, request: gr.Request,
                   profile: gr.OAuthProfile | None):
        ask(services, "compare", request, profile)
        return compare(services, photo, choice_a, choice_b, preset)

    refresh_btn.click(on_refresh, None, outputs, **PRIVATE)
    used = use_btn.click(on_use, [chosen], current, api_name="ui_use_version", **UI, **GPU)
    if "header" in services.extra:  # the page header names the serving model: follow the swap
        header, header_outputs = services.extra["header"]
        used.success(header, None, header_outputs, **PRIVATE)
    compare_btn.click(on_compare, [photo, a, b, preset], [cap_a, cap_b], api_name="ui_compare", **UI, **GPU)
    return refresh, outputs
