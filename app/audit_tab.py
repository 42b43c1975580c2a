"""The Audit tab (admins): who did which privileged action, when, on what; refusals included."""

from __future__ import annotations

import gradio as gr

from app.guard import ask

HEADERS = ["time (UTC)", "who", "role", "action", "on", "detail", "allowed"]


def audit_rows(store, limit: int = 200) -> list[list]:
    return [[e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.role, e.action, e.target or "", e.detail or "",
             "yes" if e.allowed else "refused"] for e in store.audit.entries(limit=limit)]


def build_audit_tab(services) -> gr.Tab:
    with gr.Tab("Audit", id="audit") as tab:
        gr.Markdown("Every privileged action (approve, reject, export, train, cancel, use a version, return "
                    "items to the queue) and every refused attempt by a signed-in user. "
                    "`python app.py audit --json` prints the same log.")
        refresh = gr.Button("Refresh", size="sm")
        table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, elem_id="audit-table")

    def on_open(request: gr.Request, profile: gr.OAuthProfile | None):
        ask(services, "audit", request, profile)
        return audit_rows(services.store)

    tab.select(on_open, None, table, api_visibility="private")
    refresh.click(on_open, None, table, api_visibility="private")
    return tab
