"""The Train and Models tabs in a real headless Chromium: start a short job, watch the loss
curves (training and held-out) and the job finish in the list of jobs, then serve the new version in the demo."""

import pytest

from tests.browser import browser_page
from tests.conftest import running_app
from tests.train_support import approve_shapes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture()
def served(tmp_path):
    from annotate.store import Store
    from model.loader import LoadConfig
    from model.slot import ModelSlot
    from train.jobs import JobRunner, RunnerConfig

    store = Store(f"sqlite:///{tmp_path / 'studio.db'}", tmp_path / "data")
    approve_shapes(store, 40, seed=7)
    runner = JobRunner(RunnerConfig(db_url=store.url, models_dir=tmp_path / "models"))
    slot = ModelSlot(LoadConfig(model="demo"))
    with running_app(slot=slot, store=store, jobs=runner) as url:
        yield slot, runner, url
    runner.close()
    store.close()


def test_start_a_job_see_the_loss_curve_and_serve_the_result(served, artifacts_dir):
    slot, runner, url = served
    with browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-data").get_by_text("40 approved corrections").wait_for(timeout=30_000)
        page.locator("#train-max-steps input").fill("12")
        page.locator("#train-batch input").fill("8")
        page.locator("#train-start").click()
        page.locator("#train-progress[data-status=running]").wait_for(timeout=60_000)
        page.locator("#train-progress[data-status=finished]").wait_for(timeout=240_000)
        # The loss curve holds every logged step; the evaluation table has both columns filled.
        page.wait_for_function("() => document.querySelectorAll('#train-loss canvas, #train-loss svg').length > 0",
                               timeout=30_000)
        page.locator("#train-eval").get_by_text("token F1").wait_for(timeout=30_000)
        assert "step 12 / 12" in page.locator("#train-progress").inner_text()
        page.screenshot(path=str(artifacts_dir / "train-tab.png"), full_page=True)
        assert "Traceback" not in page.content()
        job = runner.list(limit=1)[0]
        assert job.status == "finished" and len(runner.progress(job.id)["points"]) == 12
        assert runner.progress(job.id)["eval_points"]  # the held-out curve beside it
        page.wait_for_function("v => document.querySelector('#train-jobs').innerText.includes(v)",  # the job list
                               arg=job.version, timeout=30_000)

        page.get_by_role("tab", name="Models").click()
        page.wait_for_function("v => document.querySelector('#models-table').innerText.includes(v)",
                               arg=job.version, timeout=30_000)
        page.locator("#models-use").click()
        page.locator("#models-serving").get_by_text("adapter").wait_for(timeout=60_000)
        # The page header follows the swap at once, without a reload or a tab change.
        page.locator("#model-line").get_by_text("adapter").wait_for(timeout=30_000)
        assert "Untrained" not in page.locator("#demo-banner").inner_text()
        page.screenshot(path=str(artifacts_dir / "models-tab.png"), full_page=True)
        # Back on the demo tab, the header names the version now serving.
        page.get_by_role("tab", name="Caption & Chat").click()
        page.locator("#model-line").get_by_text("adapter").wait_for(timeout=30_000)
        assert "Untrained" not in page.locator("#demo-banner").inner_text()
    assert slot.get().info.version.endswith(job.version)
