"""Unit tests of perf/lib/stats.py against published values (run: python3 -m unittest)."""

import itertools
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stats import mann_whitney_u, median, midranks  # noqa: E402


class MedianTest(unittest.TestCase):
    def test_odd_and_even(self):
        self.assertEqual(median([3, 1, 2]), 2)
        self.assertEqual(median([4, 1, 3, 2]), 2.5)
        self.assertRaises(ValueError, median, [])


class MidranksTest(unittest.TestCase):
    def test_ties_share_the_mean_rank(self):
        ranks, ties = midranks([10, 20, 20, 5, 20])
        self.assertEqual(ranks, [2, 4, 4, 1, 4])
        self.assertEqual(sorted(ties), [1, 1, 3])


class MannWhitneyKnownValues(unittest.TestCase):
    def test_scipy_documentation_example(self):
        # scipy.stats.mannwhitneyu docs: males vs females, method="asymptotic":
        # statistic 17.0, pvalue 0.11134688653314041.
        r = mann_whitney_u([19, 22, 16, 29, 24], [20, 11, 17, 12])
        self.assertEqual(r.u1, 17.0)
        self.assertAlmostEqual(r.pvalue, 0.11134688653314041, places=14)

    def test_google_benchmark_compare_py_with_a_tie(self):
        # google/benchmark tools/gbench/report.py, TestReportDifferenceWithUTest, "short":
        # real_time 8, 8 vs 7, 4.54, (a third value above 8): time_pvalue 0.7670968684102772.
        # Without the tie correction (8, 8) it would be 0.7728.
        r = mann_whitney_u([8, 8], [7, 4.54, 9])
        self.assertAlmostEqual(r.pvalue, 0.7670968684102772, places=14)

    def test_google_benchmark_compare_py_without_ties(self):
        # Same test, cpu_time 80, 77 vs 75, 66.6, (a third below 77): cpu_pvalue 0.14891467317876572.
        r = mann_whitney_u([80, 77], [75, 66.6, 70])
        self.assertAlmostEqual(r.pvalue, 0.14891467317876572, places=14)

    def test_balanced_samples_give_one(self):
        # U at its mean: scipy >= 1.7 reports 1.0 (the test data of compare.py, computed with an
        # older scipy that took |z|, say 0.6985353583033387 here).
        self.assertEqual(mann_whitney_u([9, 8], [10, 7]).pvalue, 1.0)

    def test_symmetry(self):
        x, y = [1.0, 2.5, 3.1, 7.0, 4.4], [2.0, 8.1, 9.3, 6.6, 5.5, 3.0]
        self.assertAlmostEqual(mann_whitney_u(x, y).pvalue, mann_whitney_u(y, x).pvalue, places=15)

    def test_all_equal(self):
        self.assertEqual(mann_whitney_u([5, 5, 5], [5, 5]).pvalue, 1.0)

    def test_five_versus_five_fully_separated(self):
        # The smallest p interleaved A B A B x5 can give: U = 25, sigma^2 = 25 * 11 / 12,
        # z = (25 - 12.5 - 0.5) / sqrt(22.9167) = 2.5067, p = erfc(z / sqrt 2) = 0.012186.
        r = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
        self.assertAlmostEqual(r.pvalue, 0.0121857, places=6)


class TieCorrectionIsTheExactVariance(unittest.TestCase):
    def test_variance_matches_the_permutation_distribution(self):
        # Independent check of the tie term: over every split of the pooled values into
        # groups of n1 and n2, U1 has exactly the variance the formula uses.
        pooled = [1, 2, 2, 3, 3, 3, 4, 5]
        n1 = 3
        n2 = len(pooled) - n1
        us = []
        for idx in itertools.combinations(range(len(pooled)), n1):
            x = [pooled[i] for i in idx]
            y = [pooled[i] for i in range(len(pooled)) if i not in idx]
            us.append(mann_whitney_u(x, y).u1)
        mean = sum(us) / len(us)
        var = sum((u - mean) ** 2 for u in us) / len(us)
        _, ties = midranks(pooled)
        n = len(pooled)
        expected = n1 * n2 / 12 * ((n + 1) - sum(t ** 3 - t for t in ties) / (n * (n - 1)))
        self.assertAlmostEqual(mean, n1 * n2 / 2, places=12)
        self.assertAlmostEqual(var, expected, places=12)


if __name__ == "__main__":
    unittest.main()
