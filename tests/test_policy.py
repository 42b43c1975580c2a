"""The policy module on its own: modes, roles from real `gr.OAuthProfile` objects, the log-in
back-off, escaping; and, served, that off a Space no mocked Hugging Face log-in exists."""

import time

import gradio as gr
import httpx
import pytest

from app.guard import md
from app.policy import AccessConfig, LoginGuard, Policy, Refused, Role, resolve_access
from tests.conftest import running_app

SPACE = {"SYSTEM": "spaces", "SPACE_ID": "owner/humanvlm-studio", "SPACE_AUTHOR_NAME": "owner",
         "SPACE_HOST": "owner-humanvlm-studio.hf.space", "OAUTH_CLIENT_ID": "abc", "OAUTH_CLIENT_SECRET": "x",
         "OPENID_PROVIDER_URL": "https://huggingface.co"}


def _profile(username: str) -> gr.OAuthProfile:
    return gr.OAuthProfile({"preferred_username": username, "name": username.title(), "profile":
                            f"https://huggingface.co/{username}", "picture": "https://example.invalid/p.png"})


def test_modes():
    assert resolve_access("127.0.0.1", env={}).mode == "local"
    assert resolve_access("::1", env={}).mode == "local"
    assert resolve_access("0.0.0.0", env={}).mode == "public"  # bound to every interface
    assert resolve_access("127.0.0.1", public=True, env={}).mode == "public"
    assert resolve_access("127.0.0.1", auth=True, env={}).mode == "public"
    assert resolve_access("127.0.0.1", env={"SPACE_ID": "a/b"}).mode == "public"
    local = resolve_access("127.0.0.1", env={})
    assert Policy(local).identify().role is Role.ADMIN and local.visitors_can_send
    assert not resolve_access("0.0.0.0", env={}).visitors_can_send  # off by default in public


def test_roles_from_real_oauth_profiles_on_a_space():
    access = resolve_access("0.0.0.0", reviewers="rita,rob", env=SPACE)
    assert access.oauth and access.admins == {"owner"}  # the Space's owner, unless --admins says otherwise
    policy = Policy(access)
    assert policy.identify(None, _profile("owner")).role is Role.ADMIN
    assert policy.identify(None, _profile("rita")).role is Role.REVIEWER
    stranger = policy.identify(None, _profile("stranger"))
    assert (stranger.name, stranger.role, stranger.source) == ("stranger", Role.VISITOR, "huggingface")
    assert policy.identify(None, None).role is Role.VISITOR
    with pytest.raises(Refused, match="Reviewing needs the reviewer role; ask an admin to add stranger"):
        policy.require(stranger, "review")
    with pytest.raises(Refused, match="needs the reviewer role; sign in with Hugging Face"):
        policy.require(policy.identify(None, None), "review")
    named = Policy(resolve_access("0.0.0.0", admins="ada", reviewers="*", env=SPACE))
    assert named.identify(None, _profile("owner")).role is Role.REVIEWER  # --admins replaced the owner
    assert named.identify(None, _profile("anyone")).role is Role.REVIEWER  # '*' = every signed-in user


def test_profiles_count_only_where_sign_in_is_real():
    """Off a Space (no OAuth app), a profile in a session proves nothing: it is ignored."""
    policy = Policy(resolve_access("0.0.0.0", admins="owner", env={}))
    assert policy.identify(None, _profile("owner")).role is Role.VISITOR


def test_auth_users_are_reviewers_and_only_named_users_are_admins():
    class Req:
        def __init__(self, username):
            self.username, self.client = username, None

    policy = Policy(resolve_access("127.0.0.1", auth=True, admins="alice", env={}))
    assert policy.identify(Req("alice")).role is Role.ADMIN
    assert policy.identify(Req("bob")).role is Role.REVIEWER
    with pytest.raises(Refused, match="Training needs the admin role"):
        policy.require(policy.identify(Req("bob")), "train")


def test_visitors_sending_to_review_are_rate_limited():
    clock = [0.0]
    policy = Policy(AccessConfig(mode="public", visitors_can_send=True), clock=lambda: clock[0])
    visitor = policy.identify()
    for _ in range(policy.config.limits.sends_per_minute):
        policy.require(visitor, "send_to_review")
    with pytest.raises(Refused, match="at most 6 a minute"):
        policy.require(visitor, "send_to_review")
    clock[0] += 61
    policy.require(visitor, "send_to_review")
    with pytest.raises(Refused, match="needs the reviewer role"):
        Policy(AccessConfig(mode="public")).require(visitor, "send_to_review")  # off by default


def test_login_back_off_grows_per_user_and_per_address():
    clock = [100.0]
    guard = LoginGuard([("alice", "right")], free=3, clock=lambda: clock[0])
    for _ in range(3):
        assert not guard("alice", "wrong")
    assert guard.locked_for("alice") == 1.0
    assert not guard("alice", "right")  # refused during the wait, whatever the password
    clock[0] += 1.01
    assert not guard("alice", "wrong")  # 4th failure: the wait doubles
    assert guard.locked_for("alice") == 2.0
    clock[0] += 2.01
    assert guard("alice", "right")
    assert guard.locked_for("alice") == 0.0  # success clears it


def test_login_back_off_through_the_real_log_in_route():
    with running_app(auth=[("alice", "right")]) as url:
        for _ in range(3):
            assert httpx.post(f"{url}login", data={"username": "alice", "password": "nope"}).status_code == 400
        locked = httpx.post(f"{url}login", data={"username": "alice", "password": "right"})
        assert locked.status_code == 400  # the right password, during the back-off
        time.sleep(1.1)
        assert httpx.post(f"{url}login", data={"username": "alice", "password": "right"}).status_code == 200


@pytest.mark.parametrize("env", [{}, {"SYSTEM": "spaces", "SPACE_ID": "a/b"}], ids=["laptop", "space-without-oauth"])
def test_off_a_real_space_there_is_no_mocked_hugging_face_log_in(env, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    access = resolve_access("127.0.0.1", public=True, admins="owner")
    assert not access.oauth
    with running_app(access=access) as url:
        for route in ("login/huggingface", "login/callback"):
            r = httpx.get(f"{url}{route}", follow_redirects=True)
            assert r.status_code == 404, route
        assert "session" not in httpx.get(url).cookies


def test_markdown_escaping_keeps_user_text_inert():
    hostile = "see `http://evil.example` **now** [click](http://x) <img src=x onerror=alert(1)>"
    shown = md(hostile)
    assert "`" not in shown.replace("\\`", "")
    assert "<img" not in shown and "&lt;img" in shown
    assert "\\[click\\]\\(http://x\\)" in shown.replace("\\.", ".").replace("\\:", ":")
