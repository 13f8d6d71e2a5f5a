"""The eval gate: margin and paired test, both required."""

from __future__ import annotations

import pytest

from rag_server.rerank.promotion import judge, paired_p_value


def test_a_consistent_gain_is_promoted() -> None:
    verdict = judge([0.6 + 0.01 * i for i in range(15)], [0.5 + 0.01 * i for i in range(15)], margin=0.05)
    assert verdict.promoted and verdict.p_value < 0.001 and verdict.improved == 15 and verdict.worsened == 0
    assert verdict.gain == pytest.approx(0.1)


def test_a_gain_below_the_margin_is_refused_even_when_significant() -> None:
    verdict = judge([0.51] * 15, [0.5] * 15, margin=0.05)
    assert not verdict.promoted and verdict.p_value < 0.05 and "below the margin" in verdict.reason


def test_a_gain_from_one_lucky_question_is_refused_as_not_significant() -> None:
    reranked, baseline = [1.0] + [0.5] * 7 + [0.45] * 6, [0.0] + [0.45] * 7 + [0.5] * 6
    verdict = judge(reranked, baseline, margin=0.01)
    assert verdict.gain > 0.01 and verdict.p_value >= 0.05 and not verdict.promoted
    assert "not significant" in verdict.reason


def test_no_difference_gives_p_one_and_mismatched_inputs_raise() -> None:
    assert paired_p_value([0.3, 0.4], [0.3, 0.4]) == 1.0
    assert not judge([0.3, 0.4], [0.3, 0.4], margin=0.0).promoted
    with pytest.raises(ValueError):
        judge([0.1], [0.1, 0.2])
