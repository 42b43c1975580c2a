"""A real, throw-away PostgreSQL server for the tests, one per test session.

`initdb` makes a cluster in a temporary folder (trust authentication, no password), `pg_ctl`
starts it on 127.0.0.1 on a free port with its socket in the same folder, and it is stopped and
deleted at the end of the session. PostgreSQL refuses to run as root, so under root the cluster
belongs to the `postgres` user (Debian's `postgresql` package creates it; `make postgresql`
installs the package when `initdb` is missing). Each test gets a database of its own:
`fresh_database()` returns a `postgresql+psycopg://` URL to a new, empty one.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

SUPERUSER = "postgres"
_counter = itertools.count()


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} is not installed: run `make postgresql` (Debian's postgresql package)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PgServer:
    """durable=False (the tests): fsync off, a crash may lose the cluster, which is thrown away
    anyway. durable=True (benchmarks): PostgreSQL's defaults, commits flushed to disk like
    SQLite's synchronous=FULL, so throughput figures compare like with like."""

    def __init__(self, root: Path, durable: bool = False):
        self.root = root
        self.durable = durable
        self.data = root / "cluster"
        self.port = _free_port()

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        sync = () if self.durable else ("--no-sync",)
        subprocess.run(_as_owner([_bin("initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                                  *sync]), check=True, capture_output=True, timeout=120)
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=300"
        if not self.durable:
            options += " -c fsync=off"
        subprocess.run(_as_owner([_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                                  str(self.root / "server.log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=90)

    def stop(self) -> None:
        subprocess.run(_as_owner([_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        import psycopg

        name = f"test_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server():
    server = PgServer(Path(tempfile.mkdtemp(prefix="humanvlm-pg-")))
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.root / "server.log"
        shutil.rmtree(server.root, ignore_errors=True)
        detail = (exc.stderr or b"").decode(errors="replace")[-2000:]
        pytest.fail(f"could not start PostgreSQL: {detail} {log}")
    try:
        yield server
    finally:
        server.stop()
