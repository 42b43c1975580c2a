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
