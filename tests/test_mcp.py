"""`serve --mcp`: the named endpoints as MCP tools, listed and called through a real MCP client
session over streamable HTTP, under the same roles as the UI and the HTTP API."""

import asyncio

import httpx
import pytest

from tests.conftest import ASTRONAUT, running_app


def _call(url: str, tool: str, arguments: dict):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def go():
        async with streamablehttp_client(f"{url}gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                result = await session.call_tool(tool, arguments)
                return [t.name for t in tools.tools], result

    return asyncio.run(go())


@pytest.fixture()
def store(tmp_path):
    from annotate.store import Store
    from tests.train_support import approve_shapes

    with Store(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data") as store:
        approve_shapes(store, 2, seed=4)
        yield store


def test_tools_are_listed_with_descriptions_and_called_over_mcp(store):
    with running_app(store=store, mcp=True) as url:
        schema = {t["name"]: t for t in httpx.get(f"{url}gradio_api/mcp/schema").json()}
        assert {"caption", "chat", "review_claim", "review_approve", "review_reject", "export"} <= set(schema)
        assert not any(name.startswith(("ui_", "lambda")) for name in schema)
        assert schema["caption"]["description"].startswith("Caption a photo of a person")
        names, stats = _call(url, "queue_stats", {})
        assert {"caption", "queue_stats", "review_claim"} <= set(names)
        assert not stats.isError, stats
        assert "'approved': 2" in stats.content[0].text  # the dict, as text
        # File inputs are http(s) URLs Gradio downloads itself; it refuses private addresses
        # (no server-side request to the local network), so a loopback photo is refused.
        upload = httpx.post(f"{url}gradio_api/upload", files={"files": ("a.png", ASTRONAUT.read_bytes(), "image/png")})
        _, result = _call(url, "caption", {"image": f"{url}gradio_api/file={upload.json()[0]}"})
        assert result.isError


def test_mcp_tools_obey_the_roles(store):
    from app.policy import resolve_access

    access = resolve_access("127.0.0.1", public=True, admins="alice", env={})
    with running_app(store=store, access=access, mcp=True) as url:
        _, result = _call(url, "review_claim", {})
        assert result.isError and "needs the reviewer role" in result.content[0].text
        _, result = _call(url, "export", {})
        assert result.isError and "needs the admin role" in result.content[0].text
    assert store.counts()["approved"] == 2 and store.audit.entries() == []
