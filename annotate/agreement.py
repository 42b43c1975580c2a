"""How much independent corrections of one photo agree, and how a caption was changed.

The measure is token F1 (SQuAD-style): lower-cased word tokens counted as a multiset,
F1 = 2PR / (P + R), in [0, 1]; 1 = the same words. It suits captions better than exact match
(two good captions rarely match word for word) and is cheap enough to recompute on every
`stats` call. It is also the score of a reviewer against a gold reference.

    token_f1("A woman in red", "a woman wearing red")   # 0.75
    medoid(["a", "b", "c"])                             # index of the caption closest to the others
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher
from itertools import combinations

_WORD = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def token_f1(a: str, b: str) -> float:
    left, right = Counter(tokens(a)), Counter(tokens(b))
    if not left and not right:
        return 1.0
    common = sum((left & right).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(left.values()), common / sum(right.values())
    return 2 * precision * recall / (precision + recall)


def item_agreement(captions: Sequence[str]) -> float | None:
    """Mean pairwise token F1 of one item's corrections; None with fewer than two."""
    pairs = list(combinations(captions, 2))
    if not pairs:
        return None
    return sum(token_f1(a, b) for a, b in pairs) / len(pairs)


def medoid(captions: Sequence[str]) -> int:
    """Index of the caption with the highest total F1 to the others (the first on a tie)."""
    if len(captions) < 2:
        return 0
    totals = [sum(token_f1(c, other) for j, other in enumerate(captions) if j != i) for i, c in enumerate(captions)]
    return max(range(len(captions)), key=lambda i: (totals[i], -i))


def changed_spans(draft: str, final: str) -> int:
    """Word-diff spans a correction changed (inserted, deleted or replaced runs of words)."""
    ops = SequenceMatcher(a=tokens(draft), b=tokens(final), autojunk=False).get_opcodes()
    return sum(1 for op, *_ in ops if op != "equal")


def summarize(reviews: Iterable[tuple[int, str, str]]) -> dict:
    """Agreement from (item id, reviewer, caption) of approved independent reviews.

    Returns {"overall", "items", "by_reviewer", "by_item"}: overall = mean over items with two
    or more reviews; a reviewer's figure = mean F1 of their caption against the other
    reviewers' captions of the same items.
    """
    by_item: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for item_id, reviewer, caption in reviews:
        by_item[item_id].append((reviewer, caption))
    per_item: dict[int, float] = {}
    per_reviewer: dict[str, list[float]] = defaultdict(list)
    for item_id, entries in by_item.items():
        if len(entries) < 2:
            continue
        per_item[item_id] = round(item_agreement([c for _, c in entries]), 4)
        for i, (who, caption) in enumerate(entries):
            others = [token_f1(caption, other) for j, (_, other) in enumerate(entries) if j != i]
            per_reviewer[who].append(sum(others) / len(others))
    overall = round(sum(per_item.values()) / len(per_item), 4) if per_item else None
    return {
        "measure": "token_f1",
        "overall": overall,
        "items": len(per_item),
        "by_reviewer": {who: round(sum(v) / len(v), 4) for who, v in sorted(per_reviewer.items())},
        "by_item": per_item,
    }
