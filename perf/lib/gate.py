"""The instruction-count gate: measure sluice_gate under callgrind, compare with a baseline.

measure(binary)          runs the binary once under callgrind in a fixed environment and returns
                         each workload's instruction count (the "gate:<name>" dumps the binary
                         asks for), the glibc string functions it ran, and its conditions.
compare(base, now, pct)  one row per workload and the verdict: a workload that rose more than
                         `pct` percent, a workload missing on either side, a workload whose own
                         check failed, or string functions that differ from the baseline's all
                         fail the gate. Falls are reported, never fail.

Why the environment is fixed (perf/README.md, "Determinism"):
  env -i                       the client's stack starts at the same place whatever the caller's
                               environment (the counts are checked not to depend on it)
  GLIBC_TUNABLES               every CPU feature above x86-64 baseline masked for glibc's ifunc
                               resolver, so memcpy & co. are the SSE2 versions on any host
                               (valgrind 3.19 passes AVX2 through, so unpinned counts would
                               depend on the host CPU)
  MIMALLOC_ALLOW_DECOMMIT=0    mimalloc decommits freed memory on a timer; with it, allocation
                               paths (e.g. RunInline's setup) vary by a few hundred instructions
                               with how long the run took
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

# Features glibc 2.36's hwcaps tunable accepts; names it does not know are ignored.
_MASKED = ("AVX AVX2 AVX512F AVX512VL AVX512BW AVX512CD AVX512DQ ERMS FSRM FMA FMA4 BMI1 BMI2 "
           "LZCNT MOVBE POPCNT SSSE3 SSE4_1 SSE4_2 RTM Fast_Unaligned_Copy Fast_Unaligned_Load "
           "AVX_Fast_Unaligned_Load Fast_Rep_String Prefer_ERMS Prefer_FSRM").split()
GLIBC_TUNABLES = "glibc.cpu.hwcaps=" + ",".join("-" + f for f in _MASKED)

ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "LC_ALL": "C",
    "GLIBC_TUNABLES": GLIBC_TUNABLES,
    "MIMALLOC_ALLOW_DECOMMIT": "0",
}

CALLGRIND = ["--tool=callgrind", "--instr-atstart=no", "--dump-line=no", "--dump-instr=no",
             "--compress-strings=no", "--compress-pos=no", "--error-exitcode=3"]

# glibc's ifunc-selected string functions as callgrind names them: __memcpy_avx_unaligned_erms,
# __strchr_sse2, or the plain symbol (memcpy@GLIBC_2.2.5) when the baseline version is chosen.
_STRING_FN = re.compile(r"^fn=((?:__)?(?:mem|str|stp|wmem|wcs)[a-z]*(?:_[a-z0-9]+)+|(?:mem|str|stp)[a-z]*@GLIBC\S*)$")


_VARIANT = re.compile(r"^(?:__)?([a-z]+?)_((?:sse|ssse|avx|evex|erms)\w*)$")


def string_variants(names):
    """{function: {variants}} from callgrind names: __memcpy_avx_unaligned_erms is memcpy's
    avx_unaligned_erms; memcpy@GLIBC_2.2.5 (the exported default, SSE2) is memcpy's 'default'."""
    out = {}
    for n in names:
        m = _VARIANT.match(n)
        if m:
            base, variant = m.group(1), m.group(2)
        else:
            base, variant = n.split("@", 1)[0].lstrip("_"), "default"
        out.setdefault(base, set()).add(variant)
    return out


class GateError(Exception):
    """The gate could not measure at all (missing valgrind or binary, a crash)."""


class Measurement:
    def __init__(self, counts, what, string_functions, conditions, failures, output):
        self.counts = counts                      # workload -> instructions
        self.what = what                          # workload -> one-line description
        self.string_functions = string_functions  # sorted glibc string variants seen
        self.conditions = conditions              # from the binary's "condition k=v" lines
        self.failures = failures                  # workload -> why its own check failed
        self.output = output


def valgrind_version(valgrind="valgrind"):
    try:
        return subprocess.run([valgrind, "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def measure(binary, valgrind="valgrind", extra_args=(), annotate=None):
    """Counts every workload; with `annotate` (a workload name), also returns callgrind_annotate's
    per-function breakdown of that workload as Measurement.annotation."""
    if not os.access(binary, os.X_OK):
        raise GateError(f"{binary} is missing: build the release preset first "
                        "(cmake --build --preset release --target sluice_gate)")
    version = valgrind_version(valgrind)
    if version is None:
        raise GateError("valgrind is missing: run tools/bootstrap")
    with tempfile.TemporaryDirectory(prefix="sluice-gate-") as tmp:
        out_file = os.path.join(tmp, "callgrind.out")
        cmd = ["env", "-i"] + [f"{k}={v}" for k, v in ENVIRONMENT.items()]
        cmd += [shutil.which(valgrind) or valgrind] + CALLGRIND
        cmd += [f"--callgrind-out-file={out_file}", os.path.abspath(binary)] + list(extra_args)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode not in (0, 1):  # 1: a workload's own check failed (reported below)
            raise GateError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
        counts, string_functions, annotation = {}, set(), None
        for name in sorted(os.listdir(tmp)):
            if not name.startswith("callgrind.out."):
                continue
            workload, total = None, None
            with open(os.path.join(tmp, name), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("desc: Trigger: Client Request: gate:"):
                        workload = line.split("gate:", 1)[1].strip()
                    elif line.startswith("totals:"):
                        total = int(line.split()[1])
                    else:
                        m = _STRING_FN.match(line.rstrip("\n"))
                        if m:
                            string_functions.add(m.group(1))
            if workload is not None and total is not None:
                counts[workload] = total
                if workload == annotate:
                    annotation = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=no", os.path.join(tmp, name)],
                                                capture_output=True, text=True).stdout
    conditions, failures, what = {}, {}, {}
    for line in proc.stdout.splitlines():
        if line.startswith("condition "):
            k, _, v = line[len("condition "):].partition("=")
            conditions[k] = v
        elif line.startswith("FAILED "):
            name, _, why = line[len("FAILED "):].partition(": ")
            failures[name] = why
    listing = subprocess.run([binary, "--list"], capture_output=True, text=True)
    for line in listing.stdout.splitlines():
        if line.startswith("workload "):
            name, _, desc = line[len("workload "):].partition("\t")
            what[name] = desc
    conditions["valgrind"] = version
    conditions["glibc_tunables"] = GLIBC_TUNABLES
    if not counts:
        raise GateError("callgrind wrote no workload counts\n" + proc.stdout + proc.stderr[-4000:])
    m = Measurement(counts, what, sorted(string_functions), conditions, failures, proc.stdout)
    m.annotation = annotation
    return m


def baseline_document(m, source_commit):
    return {
        "about": "Instruction counts of perf/gate's workloads (callgrind Ir). The CI gate "
                 "(perf/gate/run) fails when one rises more than threshold_pct. Update with "
                 "perf/gate/run --update and commit the result with the change that moved it.",
        "threshold_pct": 3.0,
        "source_commit": source_commit,
        "conditions": {k: v for k, v in sorted(m.conditions.items())
                       if k not in ("under_valgrind", "tcprewrite")},
        "string_functions": m.string_functions,
        "workloads": {k: {"instructions": m.counts[k], "what": m.what.get(k, "")}
                      for k in sorted(m.counts)},
    }


class Row:
    def __init__(self, name, before, after, verdict):
        self.name, self.before, self.after, self.verdict = name, before, after, verdict

    @property
    def change_pct(self):
        if self.before is None or self.after is None or self.before == 0:
            return None
        return 100.0 * (self.after - self.before) / self.before


def compare(baseline, m, threshold_pct):
    """Rows for every workload on either side, the list of failure messages, and notes."""
    base = {k: v["instructions"] for k, v in baseline["workloads"].items()}
    rows, failures, notes = [], [], []
    for name in sorted(set(base) | set(m.counts)):
        before, after = base.get(name), m.counts.get(name)
        if name in m.failures:
            verdict = "CHECK FAILED"
            failures.append(f"{name}: the workload's own check failed: {m.failures[name]}")
        elif before is None:
            verdict = "NEW"
            failures.append(f"{name}: not in the baseline (perf/gate/run --update, then commit it)")
        elif after is None:
            verdict = "MISSING"
            failures.append(f"{name}: in the baseline but not measured")
        else:
            change = 100.0 * (after - before) / before if before > 0 else (0.0 if after == 0 else float("inf"))
            if change > threshold_pct:
                verdict = "REGRESSION"
                failures.append(f"{name}: +{change:.2f} % instructions ({before:,} -> {after:,})")
            elif change < -threshold_pct:
                verdict = "improved"
                notes.append(f"{name}: {change:.2f} %: lock the gain in with perf/gate/run --update")
            else:
                verdict = "ok"
        rows.append(Row(name, before, after, verdict))
    # The same function resolved to another variant means another CPU path: not comparable.
    # (A function that is no longer called at all is only a code change.)
    was, now = string_variants(baseline.get("string_functions", [])), string_variants(m.string_functions)
    for fn in sorted(set(was) & set(now)):
        if was[fn] != now[fn]:
            failures.append(f"glibc resolved {fn} to {', '.join(sorted(now[fn]))}, the baseline's run to "
                            f"{', '.join(sorted(was[fn]))}: the counts are not comparable; is GLIBC_TUNABLES honoured?")
    for key in ("compiler", "glibc", "valgrind", "build_type", "allocator"):
        was, now = baseline.get("conditions", {}).get(key), m.conditions.get(key)
        if was is not None and was != now:
            notes.append(f"{key} differs from the baseline's ({now} vs {was}): expect counts to move")
    return rows, failures, notes


def format_table(rows, threshold_pct):
    def num(v):
        return "-" if v is None else f"{v:,}"
    width = max([len(r.name) for r in rows] + [8])
    lines = [f"{'workload':<{width}}  {'baseline':>12}  {'now':>12}  {'change':>9}",
             f"{'-' * width}  {'-' * 12}  {'-' * 12}  {'-' * 9}"]
    for r in rows:
        c = r.change_pct
        change = "" if c is None else f"{c:+8.2f}%"
        lines.append(f"{r.name:<{width}}  {num(r.before):>12}  {num(r.after):>12}  {change:>9}  {r.verdict}")
    return "\n".join(lines)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
