"""Copy a whole queue database to another one, e.g. SQLite to PostgreSQL and back.

    copy_database("sqlite:///data/studio.db", "postgresql+psycopg://me@db/studio")

Both databases are brought to the newest migration first, so they have the same tables; every
table (images, items, revisions, actions, reviews, audit log, training jobs, ...) is copied
with its ids, in foreign-key order, inside one transaction on the target: a failed copy leaves
the target as it was. The target must be empty (a copy never merges two queues). On
PostgreSQL the id sequences are moved past the copied ids afterwards. Image files live in the
data folder, not in the database: with `target_data_dir` they are copied there too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, MetaData, func, select, text

from annotate.db import open_database, write_engine
from annotate.errors import CopyRefused

CHUNK_ROWS = 5000
SKIP = {"alembic_version"}  # each side's own migration bookkeeping


@dataclass
class CopyResult:
    counts: dict[str, int] = field(default_factory=dict)  # rows copied per table
    image_files: int = 0

    def summary(self) -> str:
        rows = ", ".join(f"{table} {n}" for table, n in self.counts.items())
        files = f"; {self.image_files} image files copied" if self.image_files else ""
        return f"copied {sum(self.counts.values())} rows ({rows}){files}"


def copy_database(source_url: str, target_url: str, source_data_dir: Path | None = None,
                  target_data_dir: Path | None = None, progress: Callable[[int], None] | None = None) -> CopyResult:
    source, target = open_database(source_url), open_database(target_url)
    try:
        tables = _common_tables(source, target)
        _refuse_unless_empty(target, tables)
        result = CopyResult()
        with source.connect() as reading, write_engine(target).begin() as writing:
            for name, (src, dst) in tables.items():
                result.counts[name] = _copy_table(reading, writing, src, dst, progress)
            if target.dialect.name == "postgresql":
                _advance_sequences(writing, tables)
        _verify(target, tables, result.counts)
        if target_data_dir is not None and source_data_dir is not None:
            result.image_files = _copy_image_files(source, Path(source_data_dir), Path(target_data_dir))
        return result
    finally:
        source.dispose()
        target.dispose()


def _common_tables(source: Engine, target: Engine) -> dict:
    """{name: (source table, target table)} in foreign-key order (parents first)."""
    src_meta, dst_meta = MetaData(), MetaData()
    src_meta.reflect(source)
    dst_meta.reflect(target)
    missing = sorted(set(src_meta.tables) - set(dst_meta.tables) - SKIP)
    if missing:
        raise CopyRefused(f"the target database has no table {', '.join(missing)}; upgrade the app that made it")
    return {t.name: (t, dst_meta.tables[t.name]) for t in src_meta.sorted_tables if t.name not in SKIP}


def _refuse_unless_empty(target: Engine, tables: dict) -> None:
    with target.connect() as conn:
        used = [name for name, (_, dst) in tables.items() if conn.scalar(select(func.count()).select_from(dst))]
    if used:
        raise CopyRefused(f"the target database is not empty (rows in {', '.join(used)}); copy into an empty one")


def _copy_table(reading, writing, src, dst, progress) -> int:
    columns = [c.name for c in src.columns if c.name in dst.columns]
    order = list(src.primary_key.columns) or [src.columns[columns[0]]]
    copied = 0
    query = select(*(src.c[c] for c in columns)).order_by(*order)
    rows = reading.execution_options(yield_per=CHUNK_ROWS).execute(query)
    for chunk in rows.mappings().partitions():
        writing.execute(dst.insert(), [dict(row) for row in chunk])
        copied += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return copied


def _advance_sequences(writing, tables: dict) -> None:
    for name, (_, dst) in tables.items():
        if "id" in dst.columns and dst.c.id.autoincrement and list(dst.primary_key.columns) == [dst.c.id]:
            top = f"(SELECT max(id) FROM {name})"
            writing.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), COALESCE({top}, 1), "
                                 f"{top} IS NOT NULL)"))


def _verify(target: Engine, tables: dict, counts: dict[str, int]) -> None:
    with target.connect() as conn:
        for name, (_, dst) in tables.items():
            found = conn.scalar(select(func.count()).select_from(dst))
            if found != counts[name]:
                raise CopyRefused(f"copy check failed: {name} has {found} rows in the target, {counts[name]} copied")


def _copy_image_files(source: Engine, source_dir: Path, target_dir: Path) -> int:
    if source_dir.resolve() == target_dir.resolve():
        return 0
    copied = 0
    with source.connect() as conn:
        for (relative,) in conn.execute(text("SELECT path FROM images WHERE path IS NOT NULL ORDER BY id")):
            src, dst = source_dir / relative, target_dir / relative
            if src.is_file() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
                copied += 1
    return copied
