"""Unit tests of the gate's verdicts (perf/lib/gate.py compare), without valgrind."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gate  # noqa: E402


def baseline(counts, string_functions=("memcpy@GLIBC_2.2.5",)):
    return {"threshold_pct": 3.0, "string_functions": list(string_functions),
            "conditions": {"compiler": "gcc 12.2.0"},
            "workloads": {k: {"instructions": v} for k, v in counts.items()}}


def measured(counts, failures=None, string_functions=("memcpy@GLIBC_2.2.5",), compiler="gcc 12.2.0"):
    return gate.Measurement(counts, {}, list(string_functions), {"compiler": compiler}, failures or {}, "")


class CompareTest(unittest.TestCase):
    def verdicts(self, rows):
        return {r.name: r.verdict for r in rows}

    def test_three_percent_passes_and_just_above_fails(self):
        rows, failures, _ = gate.compare(baseline({"a": 100000, "b": 100000}),
                                         measured({"a": 103000, "b": 103001}), 3.0)
        self.assertEqual(self.verdicts(rows), {"a": "ok", "b": "REGRESSION"})
        self.assertEqual(len(failures), 1)
        self.assertIn("b: +3.00 %", failures[0])

    def test_a_fall_is_a_note_never_a_failure(self):
        rows, failures, notes = gate.compare(baseline({"a": 1000}), measured({"a": 900}), 3.0)
        self.assertEqual(self.verdicts(rows), {"a": "improved"})
        self.assertEqual(failures, [])
        self.assertTrue(any("--update" in n for n in notes))

    def test_new_and_missing_workloads_fail(self):
        rows, failures, _ = gate.compare(baseline({"old": 10}), measured({"new": 10}), 3.0)
        self.assertEqual(self.verdicts(rows), {"new": "NEW", "old": "MISSING"})
        self.assertEqual(len(failures), 2)

    def test_a_workload_whose_check_failed_fails_whatever_its_count(self):
        rows, failures, _ = gate.compare(baseline({"a": 10}), measured({"a": 10}, failures={"a": "nothing parsed"}), 3.0)
        self.assertEqual(self.verdicts(rows), {"a": "CHECK FAILED"})
        self.assertIn("nothing parsed", failures[0])

    def test_another_variant_of_a_string_function_makes_counts_incomparable(self):
        _, failures, _ = gate.compare(baseline({"a": 10}),
                                      measured({"a": 10}, string_functions=["__memcpy_avx_unaligned_erms"]), 3.0)
        self.assertEqual(len(failures), 1)
        self.assertIn("memcpy", failures[0])
        self.assertIn("not comparable", failures[0])

    def test_a_string_function_no_longer_called_is_only_a_code_change(self):
        _, failures, _ = gate.compare(baseline({"a": 10}, ["memcpy@GLIBC_2.2.5", "__mempcpy_sse2_unaligned"]),
                                      measured({"a": 10}, string_functions=["memcpy@GLIBC_2.2.5"]), 3.0)
        self.assertEqual(failures, [])

    def test_another_compiler_is_a_note(self):
        _, failures, notes = gate.compare(baseline({"a": 10}), measured({"a": 10}, compiler="gcc 13"), 3.0)
        self.assertEqual(failures, [])
        self.assertTrue(any("compiler" in n for n in notes))

    def test_the_table_shows_both_counts_and_the_change(self):
        rows, _, _ = gate.compare(baseline({"rewrite/port_map": 1305308}), measured({"rewrite/port_map": 1408225}), 3.0)
        table = gate.format_table(rows, 3.0)
        self.assertIn("1,305,308", table)
        self.assertIn("1,408,225", table)
        self.assertIn("+7.88%", table)
        self.assertIn("REGRESSION", table)


class StringFunctionNamesTest(unittest.TestCase):
    def test_variants(self):
        v = gate.string_variants(["__memcpy_avx_unaligned_erms", "memcpy@GLIBC_2.2.5", "__strchr_sse2",
                                  "__memset_sse2_unaligned"])
        self.assertEqual(v, {"memcpy": {"avx_unaligned_erms", "default"}, "strchr": {"sse2"},
                             "memset": {"sse2_unaligned"}})

    def test_ifunc_variants_are_recognised(self):
        for name in ("__memcpy_avx_unaligned_erms", "__strchr_sse2", "memcpy@GLIBC_2.2.5", "__memset_sse2_unaligned"):
            self.assertTrue(gate._STRING_FN.match("fn=" + name), name)
        for name in ("strcmp", "sluice::ParseStage::Process(sluice::Batch&)", "__GI_strstr", "memset"):
            self.assertFalse(gate._STRING_FN.match("fn=" + name), name)


if __name__ == "__main__":
    unittest.main()
