"""The training job table is under Alembic (migration 0003): created on a fresh database,
adopted with its rows on a database where train/ created it itself (the old `create_all`),
and described identically by `JobRow` and the migrations."""

import sqlite3
from datetime import datetime

from sqlalchemy import inspect

from annotate.db import migrate, open_database
from train.jobstore import Base as JobBase
from train.jobstore import JobStore

OLD_JOBS_DDL = """CREATE TABLE training_jobs (id INTEGER NOT NULL, status VARCHAR(16) NOT NULL,
 options_json TEXT NOT NULL, out_dir TEXT NOT NULL, data_dir TEXT, log_path TEXT NOT NULL, pid INTEGER,
 returncode INTEGER, error TEXT, cancel_requested INTEGER NOT NULL, version VARCHAR(200),
 metrics_json TEXT, eval_json TEXT, attempts INTEGER NOT NULL, created_at DATETIME NOT NULL,
 started_at DATETIME, finished_at DATETIME, PRIMARY KEY (id))"""


def _head(url: str) -> str:
    engine = open_database(url)
    with engine.connect() as conn:
        (version,) = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    engine.dispose()
    return version


def test_a_fresh_database_gets_the_job_table_from_the_migrations(tmp_path):
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    jobs = JobStore(url)
    job = jobs.create({"method": "lora"}, out_dir="out", log_path="log", data_dir=None)
    assert jobs.get(job.id).status == "queued"
    jobs.close()
    assert int(_head(url)) >= 3
    engine = open_database(url)
    inspector = inspect(engine)
    table = JobBase.metadata.tables["training_jobs"]
    assert {c["name"] for c in inspector.get_columns("training_jobs")} == set(table.columns.keys())
    nullable = {c["name"]: c["nullable"] for c in inspector.get_columns("training_jobs")}
    assert nullable == {c.name: c.nullable for c in table.columns}
    assert {ix.name for ix in table.indexes} <= {ix["name"] for ix in inspector.get_indexes("training_jobs")}
    engine.dispose()


def test_a_table_made_by_the_old_create_all_is_adopted_with_its_jobs(tmp_path):
    from alembic import command
    from alembic.config import Config

    from annotate.db import MIGRATIONS, create_store_engine, write_engine

    path = tmp_path / "studio.db"
    url = f"sqlite:///{path}"
    engine = create_store_engine(url)  # the queue as it was before 0003: schema 0002...
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with write_engine(engine).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    engine.dispose()
    raw = sqlite3.connect(path)  # ...plus the jobs table train/ made with create_all, without its index
    raw.execute(OLD_JOBS_DDL)
    raw.execute("INSERT INTO training_jobs (status, options_json, out_dir, log_path, cancel_requested, attempts,"
                " created_at) VALUES ('finished', '{}', 'models/v1', 'v1.log', 0, 1, ?)",
                (datetime(2026, 11, 1).isoformat(sep=" "),))
    raw.commit()
    raw.close()

    jobs = JobStore(url)  # upgrades through 0003 without failing on the existing table
    (old,) = jobs.list()
    assert (old.status, old.out_dir) == ("finished", "models/v1")
    assert jobs.create({}, out_dir="o", log_path="l", data_dir=None).id == old.id + 1
    migrate(jobs.engine)  # idempotent
    indexes = {ix["name"] for ix in inspect(jobs.engine).get_indexes("training_jobs")}
    jobs.close()
    assert "ix_training_jobs_status" in indexes
    assert int(_head(url)) >= 3
