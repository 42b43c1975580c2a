"""A real Label Studio server for the round-trip tests, one per test session.

Label Studio lives in its own virtual environment (`make labelstudio` creates
`.venv-labelstudio`; `LABEL_STUDIO_VENV` points elsewhere) so its pinned Django stack never
mixes with the app's dependencies. The server binds 127.0.0.1 on a free port, keeps its
database and config in a temporary folder, never phones home, and is stopped with SIGTERM at
the end of the session.

A fresh data folder spends ~30 s in database migrations, so the first run builds an
already-migrated folder (with the test user and its API token) under
`.cache/labelstudio-template/<version>/` and every later session starts from a copy of it
in a few seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LS_VENV = Path(os.environ.get("LABEL_STUDIO_VENV", REPO_ROOT / ".venv-labelstudio"))
TEMPLATE_ROOT = REPO_ROOT / ".cache" / "labelstudio-template"
# Bump when the way the template is built changes, so stale caches are not reused.
TEMPLATE_FORMAT = 1
TEST_USER = "reviewer@example.com"
COLD_START_TIMEOUT_S = 180.0  # migrations on a busy 2-core machine
WARM_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# Generic names that Label Studio's settings read without a prefix; a developer's shell
# may well have them set, and they must not leak into the test server.
LEAKY_ENV = ("HOST", "PORT", "USERNAME", "PASSWORD", "DJANGO_SETTINGS_MODULE")


class LabelStudioServer(NamedTuple):
    url: str
    token: str


class Credentials(NamedTuple):
    username: str
    password: str
    token: str


def label_studio_executable() -> Path:
    """The `label-studio` command of the dedicated venv; fails the test when it is missing."""
    exe = LS_VENV / "bin" / "label-studio"
    if not exe.exists():
        pytest.fail(
            f"Label Studio is not installed: {exe} is missing. Run `make labelstudio` "
            "(it creates .venv-labelstudio with label-studio 1.23.2; CI runs it), "
            "or point LABEL_STUDIO_VENV at an existing install.",
            pytrace=False,
        )
    return exe


def installed_version() -> str:
    """The label-studio version, read from the venv's metadata (no slow subprocess)."""
    found = sorted(LS_VENV.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    if not found:
        return "unknown"
    return found[-1].name.removeprefix("label_studio-").removesuffix(".dist-info")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, config_dir: Path, creds: Credentials) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in LEAKY_ENV and not k.startswith("LABEL_STUDIO_")}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),  # --data-dir still writes under ~/.local
        XDG_CONFIG_HOME=str(config_dir),  # it always writes a user id file there
        LATEST_VERSION_CHECK="false",  # else a blocking 10 s call to the package index
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        LABEL_STUDIO_USERNAME=creds.username,
        LABEL_STUDIO_PASSWORD=creds.password,
        LABEL_STUDIO_USER_TOKEN=creds.token,
        # Legacy tokens can only be switched on when the organization is created (first
        # start of an empty database); later starts keep what the database says.
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
    )
    return env


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def _log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else ""


def _wait_ready(proc: subprocess.Popen, url: str, port: int, log_path: Path,
                timeout_s: float) -> None:
    """Wait for /health, and for Django's banner naming *our* port: when the port is taken,
    Label Studio silently moves to the next one, and /health would then be someone else's."""
    banner = "Starting development server at http://"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Label Studio exited with {proc.returncode}:\n{_log_tail(log_path)}")
        log = log_path.read_text(errors="replace")
        if banner in log:
            started_at = log.split(banner, 1)[1].split("/", 1)[0]
            if started_at != f"127.0.0.1:{port}":
                raise PortTaken(f"asked for port {port}, Label Studio chose {started_at}")
            if _get(f"{url}/health")[0] == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"Label Studio not ready after {timeout_s:.0f} s:\n{_log_tail(log_path)}")


class PortTaken(RuntimeError):
    pass


def _check_user(url: str, creds: Credentials) -> None:
    status, body = _get(f"{url}/api/current-user/whoami", creds.token)
    if status != 200 or json.loads(body).get("email") != creds.username:
        raise RuntimeError(f"{url} does not answer as {creds.username}: HTTP {status} {body[:200]!r}")


def start_server(work_dir: Path, creds: Credentials, timeout_s: float,
                 attempts: int = 3) -> tuple[subprocess.Popen, str]:
    """Start Label Studio on `work_dir/data`; returns the process and its base URL."""
    exe = label_studio_executable()
    env = server_env(work_dir / "data", work_dir / "config", creds)
    for attempt in range(attempts):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = work_dir / f"server-{attempt}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(exe), "start", "--internal-host", "127.0.0.1", "--port", str(port),
                 "--no-browser"],
                cwd=work_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,  # Ctrl-C goes to pytest only
            )
        try:
            _wait_ready(proc, url, port, log_path, timeout_s)
            _check_user(url, creds)
            return proc, url
        except PortTaken:
            stop_server(proc)  # another process grabbed the port between probe and bind
        except BaseException:
            stop_server(proc)
            raise
    raise RuntimeError(f"no free port for Label Studio after {attempts} attempts")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ensure_template() -> tuple[Path, Credentials]:
    """An already-migrated data folder with the test user; built once, then reused."""
    template = TEMPLATE_ROOT / f"{installed_version()}-f{TEMPLATE_FORMAT}"
    if not (template / "credentials.json").exists():
        TEMPLATE_ROOT.mkdir(parents=True, exist_ok=True)
        build_dir = Path(tempfile.mkdtemp(prefix="building-", dir=TEMPLATE_ROOT))
        try:
            creds = Credentials(TEST_USER, secrets.token_urlsafe(16), secrets.token_hex(20))
            proc, _ = start_server(build_dir, creds, COLD_START_TIMEOUT_S)
            stop_server(proc)  # a clean stop leaves a consistent SQLite file to copy
            (build_dir / "credentials.json").write_text(json.dumps(creds._asdict()))
            try:
                build_dir.rename(template)  # atomic: a parallel session never sees half of it
            except OSError:
                if not (template / "credentials.json").exists():
                    raise
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
    creds = Credentials(**json.loads((template / "credentials.json").read_text()))
    return template, creds


@pytest.fixture(scope="session")
def labelstudio_server(tmp_path_factory) -> LabelStudioServer:
    """(url, token) of a running Label Studio; the token belongs to TEST_USER."""
    label_studio_executable()
    template, creds = ensure_template()
    work_dir = tmp_path_factory.mktemp("labelstudio")
    shutil.copytree(template / "data", work_dir / "data")
    proc, url = start_server(work_dir, creds, WARM_START_TIMEOUT_S)
    try:
        yield LabelStudioServer(url, creds.token)
    finally:
        stop_server(proc)
