"""A probability is always shown beside the probability the threshold corresponds to, so
that a decision never looks contradictory ("unknown ... p 0.820")."""

from __future__ import annotations

from twinshot.cli.output import decision


def test_rejection_shows_both_comparisons() -> None:
    text = decision(0.739, 0.943, 0.820, 0.849)
    assert text == "score 0.739 < threshold 0.943; P(same) 0.820 < 0.849 at the threshold"


def test_acceptance_and_missing_scores() -> None:
    assert decision(2.5, 0.943, 0.967, 0.849).startswith("score 2.500 >= threshold 0.943; P(same) 0.967 >= 0.849")
    assert decision(float("-inf"), 0.0, 0.0, None) == "score - < threshold 0.000; P(same) 0.000"
