"""Known-answer tests of the library-backed statistics (scipy, nltk): every expected value is a
textbook example or is computed here by hand (math.comb, exact fractions), not by the library."""
import math
from fractions import Fraction

import pytest

from alignlab.errors import InputError
from alignlab.evals.benchmarks import bleu, self_bleu
from alignlab.experiments.elasticity.fit import sign_test_p, slope
from alignlab.experiments.common import mean_and_se


def upper_tail(successes: int, total: int) -> float:
    """P(X >= successes), X ~ Binomial(total, 1/2), exactly by math.comb."""
    return float(Fraction(sum(math.comb(total, k) for k in range(successes, total + 1)), 2 ** total))


@pytest.mark.parametrize("successes,total", [(7, 8), (8, 8), (9, 12), (5, 10), (0, 6), (60, 100), (1, 1)])
def test_sign_test_is_the_exact_one_sided_binomial_tail(successes, total):
    assert sign_test_p(successes, total) == pytest.approx(upper_tail(successes, total), rel=1e-12)


def test_sign_test_textbook_values_and_edges():
    assert sign_test_p(7, 8) == pytest.approx(9 / 256)  # (C(8,7) + C(8,8)) / 2^8
    assert sign_test_p(10, 10) == pytest.approx(1 / 1024)
    assert sign_test_p(0, 0) == 1.0  # no cases: no evidence
    for bad in [(-1, 5), (6, 5)]:
        with pytest.raises(ValueError):
            sign_test_p(*bad)


def test_slope_known_lines():
    assert slope([0, 1, 2, 3], [-2, 1, 4, 7]) == pytest.approx(3.0)
    # The classic example: mean x 3, mean y 4, sxy = 6, sxx = 10.
    assert slope([1, 2, 3, 4, 5], [2, 4, 5, 4, 5]) == pytest.approx(0.6)
    assert slope([2, 2, 2], [1, 2, 3]) == 0.0  # vertical: no slope, kept at 0 as before


def test_mean_and_se_known_values():
    # mean 5, sum of squares about it 32, sample variance 32/7, se = sqrt(32/7 / 8) = sqrt(4/7).
    mean, se = mean_and_se([2, 4, 4, 4, 5, 5, 7, 9])
    assert mean == pytest.approx(5.0) and se == pytest.approx(math.sqrt(4 / 7))
    with pytest.raises(ValueError):
        mean_and_se([1.0])


def test_bleu_hand_computed():
    hyp, ref = "a b c d e".split(), "a b c x e".split()
    # Clipped precisions 4/5, 2/4, 1/3, and 0/2 smoothed to 0.1/2 (nltk method1); equal lengths.
    assert bleu(hyp, [ref]) == pytest.approx((4 / 5 * 2 / 4 * 1 / 3 * 0.1 / 2) ** 0.25, rel=1e-12)
    assert bleu(hyp, [ref], n=2) == pytest.approx(math.sqrt(0.4), rel=1e-12)
    assert bleu(hyp, [ref], epsilon=0.2) == pytest.approx((4 / 5 * 2 / 4 * 1 / 3 * 0.2 / 2) ** 0.25, rel=1e-12)


def test_bleu_clips_by_the_largest_count_in_any_reference():
    # "a" twice, "b" once: the second reference allows two a's, the first one b -> 3/3, not 2/3.
    assert bleu("a a b".split(), ["a b b".split(), "a a c".split()], n=1) == pytest.approx(1.0)


def test_bleu_closest_reference_length_prefers_the_shorter_on_ties():
    # 3 and 5 are both 1 from c = 4; the shorter wins, so c > r and there is no brevity penalty
    # (choosing 5 would give exp(1 - 5/4)).
    assert bleu("a b c d".split(), ["a b c".split(), "a b c d e".split()], n=1) == pytest.approx(1.0)
    assert bleu([], ["a b".split()]) == 0.0 and bleu(["a"], []) == 0.0


def test_self_bleu_hand_computed():
    # Each text against the other: unigram precision 1/2, bigrams 0/1 -> 0.1/1, equal lengths.
    assert self_bleu(["a b", "a c"], n=1) == pytest.approx(0.5)
    assert self_bleu(["a b", "a c"], n=2) == pytest.approx(math.sqrt(0.5 * 0.1))
    assert self_bleu(["the film was very good"] * 3) == pytest.approx(1.0)  # identical, >= 4 words
    with pytest.raises(InputError):
        self_bleu(["only one"])
