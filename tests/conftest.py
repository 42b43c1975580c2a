"""Fixtures shared by several test files.

Every test run is offline and isolated: the demo model is built into a fresh cache folder
for the session (exercising build-on-first-use), and the data folder is a temporary one.
"""

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="humanvlm-tests-"))
os.environ["HUMANVLM_CACHE"] = str(_SESSION_DIR / "cache")
os.environ["GRADIO_TEMP_DIR"] = str(_SESSION_DIR / "gradio")  # uploads and downloads, removed at the end
# A data folder of this process's own (each pytest-xdist worker inherits the controller's
# environment: the flag says the folder was ours, not one the user set).
if "HUMANVLM_DATA_DIR" not in os.environ or os.environ.get("HUMANVLM_TESTS_OWN_DATA_DIR"):
    os.environ["HUMANVLM_DATA_DIR"] = str(_SESSION_DIR / "data")
    os.environ["HUMANVLM_TESTS_OWN_DATA_DIR"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
# Several pytest-xdist workers share the cores: each process (and the app processes it starts)
# gets its share of threads, or their thread pools fight and a training runs four times slower.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = _threads
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from tests.labelstudio_server import labelstudio_server  # noqa: E402,F401  (session-scoped server)
from tests.pg_server import pg_server  # noqa: E402,F401  (session-scoped PostgreSQL server)

REPO = Path(__file__).resolve().parent.parent
ASTRONAUT = REPO / "static" / "examples" / "astronaut.png"
ARTIFACTS = REPO / "test-artifacts"


def run_app(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python app.py ARGS...` as a user would run it, from the repository root."""
    return subprocess.run([sys.executable, "app.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def pytest_collection_modifyitems(items):
    """The slow files first: with several workers (make test: pytest-xdist, one file per worker
    at a time) the longest ones start at once instead of being the tail of the run."""
    slow = lambda item: item.get_closest_marker("slow") is None  # noqa: E731  (False sorts first)
    items.sort(key=slow)


def pytest_sessionfinish(session):
    import shutil

    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A new, empty database of each kind: a SQLite file, a database on the test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return request.getfixturevalue("pg_server").fresh_database()


@pytest.fixture
def store(db_url, tmp_path):
    """The review queue on each kind of database (files with their own `store` override it)."""
    from annotate.store import Store

    with Store(db_url, tmp_path / "data") as opened:
        yield opened


@pytest.fixture(scope="session")
def demo_vlm():
    """The demo model loaded through the HumanVLM loading path (shared: loading is the slow part)."""
    from model.loader import LoadConfig, load_model

    return load_model(LoadConfig(model="demo"))


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@contextmanager
def running_app(slot=None, store=None, jobs=None, auth=None, access=None, mcp=False, fetch_limits=None):
    """Build the real UI around the given services and serve it on loopback, launched as
    `serve` launches it (limits, log-in back-off); yields its URL.

    access: an app.policy.AccessConfig (default: what `serve` resolves for loopback, with --auth
    when `auth` is given)."""
    from app.policy import Policy, resolve_access
    from app.serve import launch
    from app.ui import Services, build_app
    from model.loader import LoadConfig
    from model.slot import ModelSlot

    access = access or resolve_access("127.0.0.1", auth=bool(auth), env={})
    services = Services(slot=slot or ModelSlot(LoadConfig(model="demo")), store=store, jobs=jobs,
                        policy=Policy(access))
    if fetch_limits is not None:
        services.fetch_limits = fetch_limits
    app = launch(build_app(services), access, "127.0.0.1", None, auth, prevent_thread_lock=True, quiet=True, mcp=mcp)
    try:
        yield app.local_url
    finally:
        app.close()
