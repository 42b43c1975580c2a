"""Synthetic HumanCaption-HQ-shaped data for the benchmarks (text and URLs only)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = ("woman man young older smiling short long dark blonde hair wearing blue red white jacket "
         "shirt dress standing sitting walking holding phone street park office window light "
         "background trees building crowd glasses beard eyes looking camera left right hand").split()
PROMPT = "<image>\nDescribe this photo of a person in detail."


def captions(n_distinct: int = 2000, words: int = 250, seed: int = 0) -> list[str]:
    """Distinct caption texts of about `words` words (~1.6 KB), like HumanCaption-HQ's."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + "." for _ in range(n_distinct)]


def hq_table(start: int, stop: int, texts: list[str]) -> pa.Table:
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    urls = [f"https://images.example.org/hq/{i:07d}.jpg" for i in range(start, stop)]
    turns = [[{"from": "human", "value": PROMPT}, {"from": "gpt", "value": f"Photo {i}. " + texts[i % len(texts)]}]
             for i in range(start, stop)]
    return pa.table({"url": urls, "human_caption_hq": pa.array(turns, pa.list_(turn))})


def write_hq_parquet(path: Path, rows: int, row_group: int = 20_000) -> Path:
    """Write `rows` rows in row groups, without holding the whole table in memory."""
    texts = captions()
    writer = None
    for start in range(0, rows, row_group):
        table = hq_table(start, min(rows, start + row_group), texts)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return path
