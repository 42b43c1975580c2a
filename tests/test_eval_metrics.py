"""Caption metrics: hand-checked values, and agreement with the packages they come from."""

import pytest
import sacrebleu

from train.metrics import caption_metrics, edit_distance, rouge_l, token_f1


def test_token_f1():
    assert token_f1("a red circle.", "A red circle") == 1.0
    assert token_f1("blue square", "a red circle") == 0.0
    # 2 of 3 hypothesis words found, 2 of 4 reference words: P=2/3, R=1/2
    assert token_f1("a red square", "a red circle here") == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert token_f1("", "") == 1.0 and token_f1("", "a") == 0.0


def test_rouge_l_is_the_lcs_f1():
    # LCS("the cat sat on the mat", "the cat is on the mat") = "the cat on the mat" (5 words)
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("mat the on", "on the mat") == pytest.approx(1 / 3)
    assert rouge_l("x y", "a b") == 0.0


def test_edit_distance_is_normalized():
    assert edit_distance("abc", "abc") == 0.0
    assert edit_distance("abc", "xyz") == 1.0
    assert edit_distance("abcd", "abce") == pytest.approx(0.25)


def test_caption_metrics_agree_with_sacrebleu():
    hyps = ["a red circle at the top left.", "a blue square in the center and a green triangle at the right."]
    refs = ["a red circle at the top left.", "a blue square in the center and a yellow triangle at the right."]
    m = caption_metrics(hyps, refs)
    assert m["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-3)
    assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-3)
    assert m["exact_match"] == 0.5 and m["n"] == 2
    assert 0.9 < m["token_f1"] < 1 and 0 < m["edit_distance"] < 0.1
    assert caption_metrics(refs, refs)["bleu4"] == pytest.approx(100)
    with pytest.raises(ValueError):
        caption_metrics(["a"], [])


def test_published_examples():
    # rouge-score's README example (rougeL, no stemming): P=5/8, R=5/9.
    assert rouge_l("The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog") == (
        pytest.approx(0.5882352941176471))
    # sacrebleu's README example: BLEU = 48.53, chrF2 = 59.73 (two reference streams).
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    assert round(sacrebleu.corpus_bleu(hyps, refs).score, 2) == 48.53
    assert round(sacrebleu.corpus_chrf(hyps, refs).score, 2) == 59.73


def _cider_d(hypotheses, references, sigma=6.0):
    """CIDEr-D as Vedantam et al. (2015) define it, written out independently of pycocoevalcap:
    tf-idf n-gram vectors (n = 1..4, idf over the references), clipped cosine, Gaussian length
    penalty, x10, averaged over items. One reference per item."""
    import math
    from collections import Counter

    from train.metrics import words

    def grams(tokens, n):
        return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))

    refs = [words(r) for r in references]
    df = Counter(g for r in refs for n in range(1, 5) for g in grams(r, n))
    log_n = math.log(len(refs))
    total = 0.0
    for hyp, ref in zip((words(h) for h in hypotheses), refs):
        score = 0.0
        for n in range(1, 5):
            vh = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in grams(hyp, n).items()}
            vr = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in grams(ref, n).items()}
            norm = math.sqrt(sum(v * v for v in vh.values())) * math.sqrt(sum(v * v for v in vr.values()))
            dot = sum(min(v, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, v in vh.items())
            score += (dot / norm if norm else 0.0) * math.exp(-((len(hyp) - len(ref)) ** 2) / (2 * sigma ** 2))
        total += 10 * score / 4
    return total / len(refs)


def test_cider_is_pycocoevalcaps_cider_d():
    from train.metrics import cider

    refs = ["a woman with short red hair smiles at the camera.", "a man in a blue suit stands in an office.",
            "two children play football on a green field.", "an old man reads a newspaper on a bench."]
    hyps = ["a woman with red hair smiles.", "a man in a suit sits in an office.",
            "two kids play football on a field.", "a man reads on a bench in the park."]
    assert cider(hyps, refs) == pytest.approx(_cider_d(hyps, refs), rel=1e-9)
    assert 0 < cider(hyps, refs) < cider(refs, refs) == pytest.approx(10.0)  # a perfect caption: 10
    assert caption_metrics(hyps, refs)["cider"] == round(cider(hyps, refs), 4)
