"""Caption metrics of hypotheses against the reviewers' captions.

- `bleu4` and `chrf`: corpus scores from sacrebleu, on its 0-100 scale;
- `rouge_l`: mean ROUGE-L F1 over items, the longest common subsequence of lowercased word
  tokens (rapidfuzz's LCSseq does the LCS);
- `token_f1`: mean bag-of-words F1 over items (SQuAD-style, lowercased, punctuation dropped);
- `edit_distance`: mean normalized character Levenshtein distance (0 = identical, 1 = disjoint);
- `exact_match`: share of items whose normalized caption equals the reference.
All but edit_distance: higher is better.
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def token_f1(hypothesis: str, reference: str) -> float:
    hyp, ref = Counter(words(hypothesis)), Counter(words(reference))
    common = sum((hyp & ref).values())
    if not hyp or not ref:
        return float(hyp == ref)
    if common == 0:
        return 0.0
    precision, recall = common / sum(hyp.values()), common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def rouge_l(hypothesis: str, reference: str) -> float:
    from rapidfuzz.distance import LCSseq

    hyp, ref = words(hypothesis), words(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    lcs = LCSseq.similarity(hyp, ref)  # length of the longest common subsequence of words
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def edit_distance(hypothesis: str, reference: str) -> float:
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_distance(hypothesis.strip(), reference.strip()))


def caption_metrics(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """All metrics for paired lists (same length, at least one pair)."""
    import sacrebleu

    if len(hypotheses) != len(references) or not references:
        raise ValueError("caption_metrics needs as many hypotheses as references, at least one")
    n = len(references)

    def mean(fn) -> float:
        return sum(fn(h, r) for h, r in zip(hypotheses, references)) / n

    return {
        "bleu4": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 4),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 4),
        "rouge_l": round(mean(rouge_l), 4),
        "token_f1": round(mean(token_f1), 4),
        "edit_distance": round(mean(edit_distance), 4),
        "exact_match": round(mean(lambda h, r: float(words(h) == words(r))), 4),
        "n": n,
    }
