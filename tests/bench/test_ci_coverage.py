"""The pure half of bench/ci_coverage.py's not-adopted alternative: counting declustered tail events."""

from __future__ import annotations

import math

import pytest

from bench.ci_coverage import MIN_TAIL_CLUSTERS, tail_clusters


def test_min_tail_clusters_is_the_poisson_count_that_leaves_a_window_empty_at_most_alpha_over_two() -> None:
    assert MIN_TAIL_CLUSTERS == 4
    assert math.exp(-MIN_TAIL_CLUSTERS) <= 0.025 < math.exp(-(MIN_TAIL_CLUSTERS - 1))


def test_runs_declustering_counts_runs_of_adjacent_seconds_with_an_exceedance() -> None:
    seconds = [(0.0, 2), (1.0, 1), (2.0, 0), (3.0, 5), (5.0, 1), (6.0, 0)]
    # 0-1 is one run, 3 another, 5 a third (second 4 is missing: not adjacent).
    assert tail_clusters(seconds, "runs") == 3
    assert tail_clusters([(0.0, 0), (1.0, 0)], "runs") == 0


def test_poisson_declustering_inverts_the_share_of_seconds_hit() -> None:
    # 2 of 4 seconds hit: -4 ln(1/2) = 2.77 clusters, at most the 9 exceedances.
    assert tail_clusters([(0.0, 3), (1.0, 0), (2.0, 6), (3.0, 0)], "poisson") == pytest.approx(4 * math.log(2))
    # Every second hit: the share cannot tell, so every exceedance counts; never more than the exceedances.
    assert tail_clusters([(0.0, 3), (1.0, 1)], "poisson") == 4
    assert tail_clusters([(0.0, 1), (1.0, 1), (2.0, 0)], "poisson") == 2
