"""stfusion_tf.ranking: the Pareto front of scored strategies (the selection rule is tested with
the scoring, in test_scoring.py)."""

import itertools

import numpy as np

from stfusion_tf import ranking


def test_pareto_front_of_a_hand_made_set():
    points = [
        (0.50, 100),  # 0: front
        (0.40, 120),  # 1: dominated by 0 (less accurate, more MACs)
        (0.50, 130),  # 2: dominated by 0 (the same top-1 for more MACs)
        (0.45, 100),  # 3: dominated by 0 (the same MACs, less accurate)
        (0.70, 200),  # 4: front
        (0.70, 200),  # 5: a tie with 4: both stay
        (0.30, 50),  # 6: front (the cheapest)
        (0.30, 60),  # 7: dominated by 6
        (0.70, 250),  # 8: dominated by 4 and 5
        (0.80, 300),  # 9: front (the most accurate)
    ]
    assert ranking.pareto_front(points) == [0, 4, 5, 6, 9]
    assert ranking.pareto_front(reversed(points)) == [0, 3, 4, 5, 9]  # an iterable; indices of it
    assert ranking.pareto_front([]) == []
    assert ranking.pareto_front([(0.1, 5)]) == [0]


def test_pareto_front_is_the_definition():
    """Against the definition, pair by pair, on a coarse grid where ties are frequent."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 25))
        points = list(zip(rng.integers(0, 5, n) / 4, rng.integers(0, 6, n) * 100, strict=True))

        def dominates(a, b):
            return a[0] >= b[0] and a[1] <= b[1] and a != b

        expected = [
            i
            for i, p in enumerate(points)
            if not any(dominates(q, p) for j, q in enumerate(points) if j != i)
        ]
        assert ranking.pareto_front(points) == expected, points
        # No point of the front dominates another one of it.
        front = [points[i] for i in expected]
        assert not any(dominates(a, b) for a, b in itertools.permutations(front, 2))
