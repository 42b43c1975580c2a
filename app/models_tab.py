"""The Models tab: the versions training produced, which one the demo serves, two versions
compared on one photo, and (admins) a version renamed, merged into a full model or deleted.
Only listed versions are accepted, by name (never a typed path)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from app.components import PhotoInput
from app.guard import Mistake, ask, audit, md, user_error, warn_on_mistake
from model.generate import GenerationSettings
from model.images import ImageError, load_image
from model.prompts import PRESETS
from train.manage import MAX_NAME, delete_version, in_use, merge_version, rename_version
from train.versions import (BASE_CHOICE, ModelVersion, compare_captions, config_for, list_versions, read_version,
                            version_choices)

GPU = {"concurrency_id": "gpu", "concurrency_limit": 1}  # shared with the Caption & Chat tab
PRIVATE = {"api_visibility": "private"}
UI = {"api_visibility": "undocumented"}  # the documented API is app/api.py


def _user_error(exc: Exception):
    raise user_error(exc) from None


def version_by_name(services, name: str) -> str:
    """The dropdown value of a version named by the caller (its dropdown value or label, folder
    name, version id or human name); only listed versions are accepted."""
    if name in (BASE_CHOICE, f"base: {_base(services)}"):
        return BASE_CHOICE
    for v in list_versions(services.jobs.config.models_dir):
        if name in (str(v.path), v.label(), v.path.name, v.version) or (v.name and name == v.name):
            return str(v.path)
    raise gr.Error(f"No version named {name!r}; list them with /versions.")


def trained_version(services, name: str) -> ModelVersion:
    """A listed trained version (not the base) named by the caller."""
    choice = version_by_name(services, (name or "").strip())
    version = read_version(choice) if choice != BASE_CHOICE else None
    if version is None:
        raise gr.Error("The base model is not a trained version: pick a trained version.")
    return version


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def _base(services) -> str:
    return services.jobs.config.default_base


def versions_frame(services) -> pd.DataFrame:
    rows = []
    for v in list_versions(services.jobs.config.models_dir):
        before, after = v.evaluation("before"), v.evaluation("after")
        f1 = lambda run: _round(run["metrics"]["token_f1"]) if run else "not evaluated"  # noqa: E731
        rows.append({"name": v.name or "", "version": v.version, "base": v.base,
                     "method": v.method + (" (merged)" if v.merged else ""),
                     "data": f"{v.data.get('train_items', '?')} train / {v.data.get('heldout_items', '?')} held-out",
                     "token F1 before": f1(before), "token F1 after": f1(after),
                     "final loss": _round(v.metrics.get("final_loss")),
                     "held-out loss": _round(v.metrics.get("final_heldout_loss")),
                     "created": v.created_at.replace("T", " ")[:16]})
    return pd.DataFrame(rows, columns=["name", "version", "base", "method", "data", "token F1 before", "token F1 after",
                                       "final loss", "held-out loss", "created"])


def refresh_models(services, keep: str | None = None):
    """The table, the three version dropdowns and the serving line; `keep`: the version to leave
    chosen (default the newest)."""
    choices = version_choices(services.jobs.config.models_dir, _base(services))
    newest = choices[1][1] if len(choices) > 1 else BASE_CHOICE
    chosen = keep if keep in {value for _label, value in choices} else newest
    return (versions_frame(services), gr.Dropdown(choices=choices, value=chosen),
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


# ---- managing versions (admins: "manage_versions") ------------------------------------------


def rename(services, identity, choice: str, name: str) -> ModelVersion:
    """Give a version a human name (empty: remove it); the version id stays."""
    version = trained_version(services, choice)
    try:
        renamed = rename_version(version, name, services.jobs.config.models_dir)
    except Exception as exc:
        _user_error(exc)
    audit(services, identity, "rename_version", version.path.name, f"{version.name or '-'} -> {renamed.name or '-'}")
    return renamed


def merge(services, identity, choice: str) -> ModelVersion:
    """A LoRA or QLoRA version merged into its base as a new, whole-model version."""
    version = trained_version(services, choice)
    try:
        merged = merge_version(version, services.jobs.config.models_dir, services.slot.config)
    except Exception as exc:
        _user_error(exc)
    audit(services, identity, "merge_version", version.path.name, f"new version {merged.path.name}")
    return merged


def delete(services, identity, choice: str, confirm: str) -> ModelVersion:
    """Delete a version's folder; `confirm` must name the same version again."""
    version = trained_version(services, choice)
    if not (confirm or "").strip() or version_by_name_or_none(services, confirm.strip()) != str(version.path):
        raise gr.Error(f"To delete it, type the version's name again: {confirm_word(version)}",
                       title="Not deleted", print_exception=False)
    try:
        delete_version(version, services.jobs.config.models_dir, services.slot.config, services.jobs.active())
    except Exception as exc:
        _user_error(exc)
    audit(services, identity, "delete_version", version.path.name, version.version)
    return version


def confirm_word(version: ModelVersion) -> str:
    """What the user types to confirm a deletion: the human name, else the folder name."""
    return version.name or version.path.name


def version_by_name_or_none(services, name: str) -> str | None:
    try:
        return version_by_name(services, name)
    except gr.Error:
        return None


def describe(version: ModelVersion) -> dict:
    """A version as the API reports it."""
    return {"name": version.path.name, "display_name": version.name, "version": version.version,
            "method": version.method, "merged": version.merged, "merged_from": version.merged_from}


# ---- layout ----------------------------------------------------------------------------------


def build_models(services):
    current = gr.Markdown(elem_id="models-serving")
    table = gr.Dataframe(label="Trained versions", interactive=False, elem_id="models-table")
    with gr.Row():
        chosen = gr.Dropdown(choices=[], label="Version", scale=3, elem_id="models-choice")
        use_btn = gr.Button("Use in demo", variant="primary", scale=1, elem_id="models-use")
        refresh_btn = gr.Button("Refresh", scale=1)
    manage = _build_manage()
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
    _wire_manage(services, manage, chosen, outputs)
    return refresh, outputs


def _build_manage() -> dict:
    with gr.Accordion("Rename, merge or delete the chosen version", open=False, elem_id="models-manage"):
        with gr.Row():
            name = gr.Textbox(label="Name", placeholder="e.g. spring-fixes (empty: no name)", max_length=MAX_NAME,
                              scale=3, elem_id="models-name")
            rename_btn = gr.Button("Rename", scale=1, elem_id="models-rename")
            merge_btn = gr.Button("Merge into a full model", scale=1, elem_id="models-merge")
            delete_btn = gr.Button("Delete...", variant="stop", scale=1, elem_id="models-delete")
        with gr.Row(visible=False) as confirm_row:
            confirm = gr.Textbox(label="Type the version's name to delete it", scale=3, elem_id="models-confirm")
            confirm_btn = gr.Button("Delete for good", variant="stop", scale=1, elem_id="models-delete-confirm")
            cancel_btn = gr.Button("Cancel", scale=1, elem_id="models-delete-cancel")
    return {"name": name, "rename": rename_btn, "merge": merge_btn, "delete": delete_btn, "confirm_row": confirm_row,
            "confirm": confirm, "confirm_btn": confirm_btn, "cancel": cancel_btn}


def _warned(fn, *args):
    """Run a management action; its refusal becomes a warning toast. (As a red error it would also
    lay an error overlay over the outputs, the confirmation row included, blocking the next try.)"""
    try:
        return fn(*args)
    except gr.Error as exc:
        raise Mistake(exc.message) from None


def _wire_manage(services, m: dict, chosen, outputs) -> None:
    def hidden():  # built in the handler: a component made here, inside the Blocks, would be rendered
        return gr.Row(visible=False), gr.Textbox(value="")

    def on_choose(choice: str, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "versions", request, profile)
        version = read_version(choice) if choice and choice != BASE_CHOICE else None
        return (version.name or "") if version else "", *hidden()

    @warn_on_mistake(len(outputs))
    def on_rename(choice: str, name: str, request: gr.Request, profile: gr.OAuthProfile | None):
        identity = ask(services, "manage_versions", request, profile, target=choice)
        version = _warned(rename, services, identity, choice, name)
        gr.Info(f"Renamed: {version.name}" if version.name else "The version has no name now.")
        return refresh_models(services, keep=str(version.path))

    @warn_on_mistake(len(outputs))
    def on_merge(choice: str, request: gr.Request, profile: gr.OAuthProfile | None):
        identity = ask(services, "manage_versions", request, profile, target=choice)
        merged = _warned(merge, services, identity, choice)
        gr.Info(f"Merged into a new version: {merged.path.name}. Use it in the demo like any other.")
        return refresh_models(services, keep=str(merged.path))

    @warn_on_mistake(2)
    def on_delete(choice: str, request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "manage_versions", request, profile, target=choice)
        version = _warned(trained_version, services, choice)
        reason = in_use(version, services.jobs.config.models_dir, services.slot.config, services.jobs.active())
        if reason:  # said at once, before the name is typed
            raise Mistake(f"{version.version} cannot be deleted: {reason}")
        word = confirm_word(version)
        return gr.Row(visible=True), gr.Textbox(value="", label=f"Type {word} to delete it for good")

    @warn_on_mistake(len(outputs) + 2)
    def on_confirm(choice: str, typed: str, request: gr.Request, profile: gr.OAuthProfile | None):
        identity = ask(services, "manage_versions", request, profile, target=choice)
        gone = _warned(delete, services, identity, choice, typed)
        gr.Info(f"Deleted {gone.path.name}.")
        return *refresh_models(services), *hidden()

    closing = [m["confirm_row"], m["confirm"]]
    chosen.change(on_choose, [chosen], [m["name"], *closing], **PRIVATE)
    m["rename"].click(on_rename, [chosen, m["name"]], outputs, api_name="ui_version_rename", **UI)
    m["merge"].click(on_merge, [chosen], outputs, api_name="ui_version_merge", **UI, **GPU)
    m["delete"].click(on_delete, [chosen], closing, **PRIVATE)
    m["cancel"].click(hidden, None, closing, **PRIVATE)
    # In the GPU group too: a deletion never pulls a folder from under a load, a merge or a swap.
    m["confirm_btn"].click(on_confirm, [chosen, m["confirm"]], [*outputs, *closing], api_name="ui_version_delete",
                           **UI, **GPU)
