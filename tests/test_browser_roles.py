"""What each role sees, in a real headless Chromium: an anonymous visitor gets Caption & Chat
only, a reviewer gets Review too, an admin gets everything. (The handlers refuse the same
callers on their own: tests/test_access.py.)"""

import pytest

from tests.browser import browser_page
from tests.conftest import running_app

pytestmark = pytest.mark.browser
ALL_TABS = ["Caption & Chat", "Review", "Export", "Train", "Models", "Data", "Audit"]


@pytest.fixture()
def services(tmp_path):
    from annotate.store import Store
    from model.loader import LoadConfig
    from model.slot import ModelSlot
    from train.jobs import JobRunner, RunnerConfig

    store = Store(f"sqlite:///{tmp_path / 'studio.db'}", tmp_path / "data")
    runner = JobRunner(RunnerConfig(db_url=store.url, models_dir=tmp_path / "models"))
    yield store, runner, ModelSlot(LoadConfig(model="demo"))
    runner.close()
    store.close()


def _tabs(page) -> list[str]:
    page.locator("#model-line").get_by_text("Model:").wait_for(timeout=30_000)  # the load event has run
    page.wait_for_function("() => document.querySelector('#who-line') !== null")
    page.get_by_role("tab", name="Caption & Chat").wait_for()
    return [name for name in ALL_TABS if page.get_by_role("tab", name=name).is_visible()]


def _log_in(page, url, user, password):
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def test_anonymous_visitor_sees_caption_and_chat_only(services):
    from app.policy import resolve_access

    store, runner, slot = services
    access = resolve_access("127.0.0.1", public=True, admins="alice", env={})
    with running_app(slot=slot, store=store, jobs=runner, access=access) as url, browser_page() as page:
        page.goto(url)
        page.locator("#who-line").get_by_text("Visiting anonymously").wait_for(timeout=30_000)
        assert _tabs(page) == ["Caption & Chat"]
        assert not page.locator("#send-review-btn").is_visible()


def test_reviewer_sees_review_and_admin_sees_everything(services):
    from app.policy import resolve_access

    store, runner, slot = services
    users = [("alice", "alice-pw"), ("bob", "bob-pw")]
    access = resolve_access("127.0.0.1", auth=True, admins="alice", env={})
    with running_app(slot=slot, store=store, jobs=runner, auth=users, access=access) as url:
        with browser_page() as page:
            _log_in(page, url, "bob", "bob-pw")
            page.locator("#who-line").get_by_text("Signed in as bob (reviewer)").wait_for(timeout=30_000)
            assert _tabs(page) == ["Caption & Chat", "Review", "Data"]
        with browser_page() as page:
            _log_in(page, url, "alice", "alice-pw")
            page.locator("#who-line").get_by_text("Signed in as alice (admin)").wait_for(timeout=30_000)
            assert _tabs(page) == ALL_TABS
            page.get_by_role("tab", name="Audit").click()
            page.locator("#audit-table").wait_for()
