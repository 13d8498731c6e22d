"""Statistics for perf/run and perf/report, in plain Python (no scipy, no numpy).

median(xs)                the middle value (mean of the two middle ones for an even count)
mann_whitney_u(x, y)      two-sided Mann-Whitney U test, normal approximation with tie and
                          continuity correction: what scipy.stats.mannwhitneyu(x, y,
                          alternative='two-sided', method='asymptotic') returns, and what
                          Google Benchmark's tools/compare.py reports as the U-test p-value.

How the p-value is computed (scipy >= 1.7, _mannwhitneyu.py):
  ranks        midranks of x + y pooled (tied values share the mean of their ranks)
  U1           R1 - n1 (n1 + 1) / 2, R1 the sum of x's ranks;  U2 = n1 n2 - U1
  U            max(U1, U2)                                   (two-sided)
  mu           n1 n2 / 2
  sigma        sqrt(n1 n2 / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))))  over tie groups t
  z            (U - mu - 0.5) / sigma                         (continuity correction)
  p            min(1, 2 * P(Z > z)) = min(1, erfc(z / sqrt 2))
scipy before 1.7 took |z| instead of z, which only differs when U is within 0.5 of its mean
(it then reported p < 1 for perfectly balanced samples, e.g. 0.6985 for [9, 8] vs [10, 7]);
the versions agree everywhere else (tests: perf/lib/test_stats.py).
"""

import math


def median(xs):
    s = sorted(xs)
    if not s:
        raise ValueError("median of nothing")
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def midranks(values):
    """Ranks 1..n of `values` (in their order), ties sharing the mean of their ranks, and the
    sizes of the tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1  # mean of ranks i+1 .. j+1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


class MannWhitney:
    def __init__(self, u1, u, z, pvalue):
        self.u1 = u1          # U of the first sample (scipy's `statistic`)
        self.u = u            # max(U1, U2)
        self.z = z
        self.pvalue = pvalue

    def __repr__(self):
        return f"MannWhitney(u1={self.u1}, z={self.z:.4f}, pvalue={self.pvalue:.6g})"


def mann_whitney_u(x, y):
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    ranks, ties = midranks(list(x) + list(y))
    n = n1 + n2
    r1 = sum(ranks[:n1])
    u1 = r1 - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    u = max(u1, u2)
    mu = n1 * n2 / 2
    tie_term = sum(t ** 3 - t for t in ties)
    var = n1 * n2 / 12 * ((n + 1) - (tie_term / (n * (n - 1)) if n > 1 else 0))
    if var <= 0:  # every value equal: no evidence of any difference
        return MannWhitney(u1, u, 0.0, 1.0)
    z = (u - mu - 0.5) / math.sqrt(var)
    p = min(1.0, math.erfc(z / math.sqrt(2)))
    return MannWhitney(u1, u, z, p)
