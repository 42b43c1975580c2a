"""The typed HTTP API: named endpoints with named parameters (`gr.api`), for scripts,
`gradio_client` and MCP clients. Same roles as the UI: every function asks the policy first.

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860")
    client.predict(handle_file("photo.jpg"), api_name="/caption")

The caller is identified by the log-in (`Client(url, auth=(user, password))`) or Hugging Face
sign-in, never by a parameter.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData

from app.caption_tab import GPU, caption_photo, chat as chat_turn, new_session
from app.guard import ask, audit, uploaded_path, user_error
from app.review_tab import NO_PHOTO, run_export
from app.models_tab import use_in_demo, version_by_name
from app.train_tab import cancel_job, start_job, training_source

# Same queue and concurrency group as the UI's model events: one model, shared fairly.
_GPU = {"concurrency_id": GPU, "concurrency_limit": 1}


def register_api(services) -> None:
    """Add the endpoints to the current `gr.Blocks` (the ones whose back end is present)."""
    for fn in _model_endpoints(services):
        gr.api(fn, api_name=fn.__name__, **_GPU)
    if services.store is not None:
        for fn in _review_endpoints(services):
            gr.api(fn, api_name=fn.__name__)
    if services.jobs is not None:
        for fn in _train_endpoints(services):
            gr.api(fn, api_name=fn.__name__, **(_GPU if fn.__name__ == "use_version" else {}))
    if services.jobs is not None:  # trained versions: rename, merge (loads a model), delete (never under a load)
        for fn in _version_endpoints(services):
            gr.api(fn, api_name=fn.__name__, **({} if fn.__name__ == "version_rename" else _GPU))


def _last(generator):
    result = None
    for result in generator:
        pass
    return result


def _model_endpoints(services):
    policy, slot = services.policy, services.slot

    def caption(image: FileData, preset: str = "detailed", prompt: str = "", max_new_tokens: int = 400,
                request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:
        """Caption a photo of a person. preset: detailed, face, body, background or brief; a prompt
        overrides the preset. Returns the caption."""
        ask(services, "caption", request, profile)
        prompt = _check(policy.check_text, prompt, "prompt")
        text, _chat, _session = _last(caption_photo(slot, uploaded_path(image), preset, prompt,
                                                    policy.cap_tokens(max_new_tokens), 0.0, 0.9, 1.0, scores=False))
        return text  # no draft comes of it: its confidence is not recorded

    def chat(image: FileData, message: str, history: list = [], max_new_tokens: int = 400,  # noqa: B006
             request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:
        """Ask about a photo. history: earlier turns, as [{"role": "user"|"assistant", "content": ...}]
        or [question, answer] pairs. Returns the answer."""
        ask(services, "chat", request, profile)
        message = _check(policy.check_text, message, "message")
        photo = uploaded_path(image)
        session = {**new_session(photo), "turns": policy.trim_turns(_turns(policy, history))}
        _empty, _messages, session = _last(chat_turn(slot, message, session, photo,
                                                     policy.cap_tokens(max_new_tokens), 0.0, 0.9, 1.0,
                                                     scores=False))
        return session["turns"][-1][1]

    return [caption, chat]


def _turns(policy, history) -> list[tuple[str, str]]:
    """Earlier turns as (question, answer) pairs, each bounded like a new message."""
    if not isinstance(history, list):
        raise gr.Error("history is a list of {role, content} messages or [question, answer] pairs.")
    if history and all(isinstance(m, dict) for m in history):
        users = [m.get("content", "") for m in history if m.get("role") == "user"]
        answers = [m.get("content", "") for m in history if m.get("role") == "assistant"]
        pairs = list(zip(users, answers))
    elif all(isinstance(p, (list, tuple)) and len(p) == 2 for p in history):
        pairs = [tuple(p) for p in history]
    else:
        raise gr.Error("history is a list of {role, content} messages or [question, answer] pairs.")
    out = []
    for question, answer in pairs:
        if not isinstance(question, str) or not isinstance(answer, str):
            raise gr.Error("Every turn of the history is text.")
        out.append((_check(policy.check_text, question, "message"), _check(policy.check_caption, answer)))
    return out


def _check(check, *args):
    try:
        return check(*args)
    except Exception as exc:
        raise user_error(exc) from None


# ---- review -----------------------------------------------------------------------------------


def item_dict(services, item) -> dict:
    image = None
    if item.image.path and Path(item.image.path).exists():
        image = FileData(path=services.outbox.copy(item.image.path)).model_dump()
    return {"id": item.id, "status": item.status, "caption": item.caption, "draft": item.draft.caption,
            "version": item.version, "image": image, "source_url": item.image.url, "fields": dict(item.fields),
            "claimed_by": item.claimed_by, "model_version": item.draft.model_version}


def _review_endpoints(services):
    store, policy = services.store, services.policy

    def _run(fn, *args, **kwargs):
        """Call the store; its named errors become clear messages."""
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise user_error(exc) from None

    def review_claim(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict | None:
        """Claim the next item to review (a lease); null when nothing is left for you."""
        from annotate.fetch import photo_for_review

        identity = ask(services, "review", request, profile)
        item = _run(store.claim_next, identity.name)
        item, note = photo_for_review(store, item, services.fetch_limits)
        return None if item is None else {**item_dict(services, item), "note": note or None}

    def review_approve(item_id: int, caption: str = "", version: int | None = None, request: gr.Request = None,
                       profile: gr.OAuthProfile | None = None) -> dict:
        """Approve an item you claimed, with your corrected caption (empty: the current one).
        version: the item version you read (refuses a stale save); default the current one."""
        identity = ask(services, "review", request, profile, target=f"item {item_id}")
        caption = _check(policy.check_caption, caption)
        item = _run(store.get_item, int(item_id), reviewer=identity.name)  # overlap: own review
        if item.image.path is None:
            raise gr.Error(NO_PHOTO, print_exception=False)
        expected = item.version if version is None else int(version)
        if caption.strip() and caption.strip() != (item.caption or "").strip():
            expected = _run(store.submit_correction, item.id, identity.name, caption,
                            expected_version=expected)
        _run(store.approve, item.id, identity.name, expected_version=expected)
        audit(services, identity, "approve", f"item {item.id}")
        return item_dict(services, store.get_item(item.id, reviewer=identity.name))

    def review_reject(item_id: int, reason: str, request: gr.Request = None,
                      profile: gr.OAuthProfile | None = None) -> dict:
        """Reject an item you claimed; the reason is required (e.g. 'not a photo of a person')."""
        identity = ask(services, "review", request, profile, target=f"item {item_id}")
        reason = _check(policy.check_text, (reason or "").strip(), "reason")
        if not reason:
            raise gr.Error("Give a reason to reject (e.g. 'not a photo of a person').")
        _run(store.reject, int(item_id), identity.name, reason)
        audit(services, identity, "reject", f"item {item_id}", reason)
        return item_dict(services, store.get_item(int(item_id), reviewer=identity.name))

    def review_skip(item_id: int, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
        """Skip an item you claimed (it waits until an admin returns skipped items)."""
        identity = ask(services, "review", request, profile)
        _run(store.skip, int(item_id), identity.name)
        return item_dict(services, store.get_item(int(item_id), reviewer=identity.name))

    def review_undo(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
        """Undo your last review action; returns the item as it is again."""
        identity = ask(services, "review", request, profile)
        return item_dict(services, _run(store.undo_last, identity.name))

    def queue_stats(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
        """Counts per status in the queue, and your own counts."""
        identity = ask(services, "review", request, profile)
        return {"queue": store.counts(), "you": store.reviewer_counts(identity.name)}

    def export(format: str = "humancaptionhq", status: str = "approved",  # noqa: A002
               request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> FileData:
        """Export items (approved by default) as a zip: humancaptionhq (parquet) or llava (JSON + images)."""
        identity = ask(services, "export", request, profile)
        _summary, archive, _files = run_export(services, identity, format, status)
        return FileData(path=archive)

    def audit_log(limit: int = 100, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> list:
        """The newest entries of the audit log (admins)."""
        ask(services, "audit", request, profile)
        return [e.as_json() for e in store.audit.entries(limit=max(1, min(int(limit), 1000)))]

    def disagreements(threshold: float = 0.5, limit: int = 50, request: gr.Request = None,
                      profile: gr.OAuthProfile | None = None) -> list:
        """Overlap items whose independent reviews agree (token F1) below the threshold, lowest first,
        each with every reviewer's caption: what an admin adjudicates."""
        ask(services, "adjudicate", request, profile)
        found = _run(store.disagreements, float(threshold), max(1, min(int(limit), 200)))
        return [{"id": d.item.id, "agreement": round(d.agreement, 4), "draft": d.item.draft.caption,
                 "reviews": [{"reviewer": r.reviewer, "status": r.status, "caption": r.caption} for r in d.reviews]}
                for d in found]

    def adjudicate(item_id: int, pick: str = "", caption: str = "", request: gr.Request = None,
                   profile: gr.OAuthProfile | None = None) -> dict:
        """Settle an overlap item: pick one reviewer's caption (their name), or give a merged caption."""
        identity = ask(services, "adjudicate", request, profile, target=f"item {item_id}")
        caption = _check(policy.check_caption, caption).strip() or None
        _run(store.adjudicate, int(item_id), identity.name, pick.strip() or None, caption)
        audit(services, identity, "adjudicate", f"item {item_id}", f"pick {pick}" if pick.strip() else "merged caption")
        return item_dict(services, store.get_item(int(item_id)))

    return [review_claim, review_approve, review_reject, review_skip, review_undo, queue_stats, export, audit_log,
            disagreements, adjudicate]


# ---- training and versions ----------------------------------------------------------------------


def job_dict(job) -> dict | None:
    if job is None:
        return None
    return {"id": job.id, "status": job.status, "options": job.options, "version": job.version,
            "error": job.error, "attempts": job.attempts}


def _train_endpoints(services):
    jobs = services.jobs

    def train_start(base: str = "", method: str = "lora", max_steps: int | None = None, epochs: float | None = None,
                    lr: float | None = None, batch_size: int | None = None, lora_r: int | None = None,
                    lora_alpha: int | None = None, grad_accum: int | None = None, save_steps: int | None = None,
                    max_length: int | None = None, vision_tower: str = "", merge: bool = False,
                    lora_targets: str = "", lr_scheduler_type: str = "", dtype: str = "", report_to: str = "",
                    heldout: float | None = None, export: str = "", request: gr.Request = None,
                    profile: gr.OAuthProfile | None = None) -> dict:
        """Start stage-two fine-tuning. base: empty for the serving model's base, 'demo', or one listed
        with --bases; other settings empty = the base's default. lora_targets: comma-separated layer
        names (q_proj,v_proj...), empty = all; lr_scheduler_type: cosine, linear, constant_with_warmup...;
        dtype: auto, float32, bfloat16, float16; report_to: auto, tensorboard, trackio, wandb, none.
        export: the name of an export of approved items (the Export tab's folders) to train on; empty = a
        fresh export of every approval, holding out `heldout` of it (0 to 0.5; empty = 0.1)."""
        identity = ask(services, "train", request, profile)
        more = {"lora_r": lora_r, "lora_alpha": lora_alpha, "grad_accum": grad_accum, "save_steps": save_steps,
                "max_length": max_length, "vision_tower": vision_tower, "merge": merge, "lora_targets": lora_targets,
                "lr_scheduler_type": lr_scheduler_type, "dtype": dtype, "report_to": report_to}
        source = training_source(services, export, heldout)
        start_job(services, identity, base, method, epochs, max_steps, lr, batch_size, more, source)
        return job_dict(jobs.list(limit=1)[0])

    def train_cancel(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
        """Cancel the running training job."""
        identity = ask(services, "cancel", request, profile)
        job = jobs.active()
        cancel_job(services, identity)
        return job_dict(jobs.get(job.id))

    def train_jobs(limit: int = 20, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> list:
        """Past and running training jobs, newest first (at most `limit`, up to 200)."""
        ask(services, "train", request, profile)
        return [job_dict(job) for job in jobs.list(limit=max(1, min(int(limit), 200)))]

    def train_exports(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> list:
        """The exports of approved items /train_start can train on (by `name`), newest first."""
        ask(services, "train", request, profile)
        from annotate.export import exports_dir, list_exports

        if services.store is None:
            return []
        return [{"name": e.name, "format": e.format, "created": e.created_at, "counts": e.counts}
                for e in list_exports(exports_dir(services.store.data_dir), status="approved")]

    def versions(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> list:
        """The versions the demo can serve: the base model first, then trained ones, newest first."""
        ask(services, "versions", request, profile)
        from train.versions import list_versions

        base = services.jobs.config.default_base
        out = [{"name": "base", "base": base, "method": None, "created": None}]
        for v in list_versions(jobs.config.models_dir):
            after = v.evaluation("after")
            out.append({"name": v.path.name, "display_name": v.name, "base": v.base, "method": v.method,
                        "created": v.created_at, "token_f1": after["metrics"].get("token_f1") if after else None})
        return out

    def use_version(name: str, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
        """Serve a version (a name or display_name from /versions) in the demo, without a restart."""
        identity = ask(services, "use_version", request, profile, target=name)
        use_in_demo(services, identity, version_by_name(services, name))
        info = services.slot.get().info
        return {"model": info.describe(), "version": info.version, "is_demo": info.is_demo}

    return [train_start, train_cancel, train_jobs, train_exports, versions, use_version]


def _version_endpoints(services):
    from app.models_tab import delete, describe, merge, rename

    def version_rename(name: str, new_name: str = "", request: gr.Request = None,
                       profile: gr.OAuthProfile | None = None) -> dict:
        """Give a trained version (a name from /versions) a human name, e.g. 'spring-fixes': at most 40
        letters, digits, spaces, '.', '_' or '-', unique; empty removes it. The version id never changes."""
        identity = ask(services, "manage_versions", request, profile, target=name)
        return describe(rename(services, identity, name, new_name))

    def version_merge(name: str, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
        """Merge a LoRA or QLoRA version into its base as a new, whole-model version (returned);
        the original stays. Refused for full and already merged versions."""
        identity = ask(services, "manage_versions", request, profile, target=name)
        return describe(merge(services, identity, name))

    def version_delete(name: str, confirm: str, request: gr.Request = None,
                       profile: gr.OAuthProfile | None = None) -> dict:
        """Delete a trained version's folder; confirm: the version's name again. Refused for the version
        the demo serves, one a running training job writes or trains from, and one another version is built on."""
        identity = ask(services, "manage_versions", request, profile, target=name)
        return describe(delete(services, identity, name, confirm))

    return [version_rename, version_merge, version_delete]
