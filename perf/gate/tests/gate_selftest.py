#!/usr/bin/env python3
"""The gate's proof, run by ctest (label perf, builds without sanitizers only):

  gate_selftest.py no-false-alarm --build DIR
      A baseline is taken from this build's sluice_gate, then the gate runs five more times
      against it (every run must pass, with counts identical to each other), then a second
      baseline is taken: its raw counts must equal the first's, instruction for instruction.
  gate_selftest.py catches-canary --build DIR
      The same baseline, then the gate on sluice_gate_canary (a known slowdown in the rewrite
      stage, perf/gate/canary.h): it must exit 1, name rewrite/port_map among the regressions,
      and flag nothing outside rewrite/ (the canary touches nothing else).

Both compare against a baseline measured from the same build, never perf/baseline.json: they
prove the mechanism, whatever the committed baseline says (CI's gate step checks that).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "..", "run")


def gate(*args):
    p = subprocess.run([sys.executable, RUN] + list(args), capture_output=True, text=True)
    print(p.stdout, end="")
    print(p.stderr, end="", file=sys.stderr)
    return p


def counts(path):
    """{workload: instructions} of a baseline file."""
    with open(path) as f:
        return {k: v["instructions"] for k, v in json.load(f)["workloads"].items()}


def fail(msg):
    print(f"gate_selftest: FAILED: {msg}")
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["no-false-alarm", "catches-canary"])
    ap.add_argument("--build", required=True)
    a = ap.parse_args()
    plain = os.path.join(a.build, "perf", "gate", "sluice_gate")
    canary = os.path.join(a.build, "perf", "gate", "sluice_gate_canary")
    with tempfile.TemporaryDirectory(prefix="gate-selftest-") as tmp:
        baseline = os.path.join(tmp, "baseline.json")
        p = gate("--binary", plain, "--baseline", baseline, "--update")
        if p.returncode != 0:
            fail(f"could not take a baseline (exit {p.returncode})")

        if a.mode == "no-false-alarm":
            p = gate("--binary", plain, "--baseline", baseline, "--runs", "5")
            if p.returncode != 0:
                fail(f"the unchanged code failed the gate (exit {p.returncode})")
            if "identical in every run" not in p.stdout:
                fail("the five runs did not report identical counts")
            # The table rounds to 0.01 %; the raw counts must match exactly: take a second
            # baseline and compare it with the first, instruction for instruction.
            again = os.path.join(tmp, "again.json")
            if gate("--binary", plain, "--baseline", again, "--update").returncode != 0:
                fail("could not take the second baseline")
            first, second = counts(baseline), counts(again)
            moved = sorted(k for k in set(first) | set(second) if first.get(k) != second.get(k))
            if not first or moved:
                fail("counts moved between identical runs: " + ", ".join(
                    f"{k} {first.get(k)} -> {second.get(k)}" for k in moved))
            print(f"gate_selftest: ok: 7 runs of the unchanged code, {len(first)} workloads, every count identical")
            return 0

        p = gate("--binary", canary, "--baseline", baseline)
        if p.returncode != 1:
            fail(f"the canary build should fail the gate with exit 1, got {p.returncode}")
        if "CANARY" not in p.stdout:
            fail(f"{canary} is not a canary build")
        flagged = re.findall(r"^(\S+)\s.*\sREGRESSION$", p.stdout, re.M)
        if "rewrite/port_map" not in flagged:
            fail(f"rewrite/port_map not flagged; flagged: {flagged}")
        stray = [w for w in flagged if not w.startswith("rewrite/")]
        if stray:
            fail(f"workloads the canary does not touch were flagged: {stray}")
        print(f"gate_selftest: ok: the canary's slowdown failed the gate on {', '.join(flagged)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
