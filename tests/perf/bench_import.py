"""Import a generated 311,000-row HumanCaption-HQ-shaped parquet into a fresh SQLite queue.

    python -m tests.perf.bench_import [--rows 311000] [--json]

The import runs in a child process so its peak memory (resource.getrusage ru_maxrss) is its
own. Targets: <= 60 s and <= 2 GB peak RSS on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.perf.datagen import write_hq_parquet

REPO = Path(__file__).resolve().parents[2]


def child(parquet: str, folder: str) -> None:
    from annotate.importers import import_file
    from annotate.store import Store

    start = time.perf_counter()
    with Store(data_dir=Path(folder)) as store:
        result = import_file(store, parquet)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb), "rows_read": result.rows_read,
                      "imported": result.imported, "bad": result.bad}))


def run(rows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        parquet = write_hq_parquet(Path(tmp) / "hq.parquet", rows)
        size_mb = parquet.stat().st_size / 2**20
        proc = subprocess.run([sys.executable, "-m", "tests.perf.bench_import", "--child", str(parquet), tmp],
                              cwd=REPO, capture_output=True, text=True, check=True)
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"benchmark": "import HumanCaption-HQ parquet", "rows": rows, "parquet_mb": round(size_mb),
            **measured, "rows_per_s": round(rows / measured["seconds"]),
            "targets": {"seconds": "<= 60", "peak_rss_mb": "<= 2048"},
            "pass": measured["seconds"] <= 60 and measured["peak_rss_mb"] <= 2048 and measured["imported"] == rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=311_000)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--child", nargs=2, metavar=("PARQUET", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    print(json.dumps(run(args.rows), indent=None if args.json else 2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
