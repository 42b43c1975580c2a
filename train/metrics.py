"""Caption metrics of hypotheses against the reviewers' captions.

- `bleu4` and `chrf`: corpus scores from sacrebleu, on its 0-100 scale;
- `cider`: CIDEr-D from pycocoevalcap (the COCO caption evaluation's scorer, pure Python), on its
  own scale (0 to about 10; papers often print it x100). Its IDF comes from the references of the
  evaluated set, so it needs several items to mean anything (one item scores 0). The COCO
  pipeline's Java PTB tokenizer is replaced by `words()` (lowercased words, punctuation dropped);
- `rouge_l`: mean ROUGE-L F1 over items from Google's rouge-score (ROUGE-1.5.5's tokenization:
  lowercased ASCII letters and digits, no stemming);
- `token_f1`: mean bag-of-words F1 over items (SQuAD-style, lowercased, punctuation dropped);
- `edit_distance`: mean normalized character Levenshtein distance (0 = identical, 1 = disjoint);
- `exact_match`: share of items whose normalized caption equals the reference.
All but edit_distance: higher is better.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

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
    return _rouge_scorer().score(reference, hypothesis)["rougeL"].fmeasure  # score(target, prediction)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=False)


def cider(hypotheses: list[str], references: list[str]) -> float:
    """Corpus CIDEr-D (pycocoevalcap), one reference per item."""
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [" ".join(words(r))] for i, r in enumerate(references)}
    res = {i: [" ".join(words(h))] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


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
        "cider": round(cider(hypotheses, references), 4),
        "rouge_l": round(mean(rouge_l), 4),
        "token_f1": round(mean(token_f1), 4),
        "edit_distance": round(mean(edit_distance), 4),
        "exact_match": round(mean(lambda h, r: float(words(h) == words(r))), 4),
        "n": n,
    }
