"""The mutation score per module, from the results `mutmut run` left in mutants/ (run by `make mutate`).

    python tools/mutation_score.py [--json] [--survivors]

A mutant is killed when a test failed or timed out with it. Survivors judged equivalent to the code, listed with
their reasons in tools/mutation_equivalents.txt, are left out of the score; those listed as reachable only on a
GPU stay in it, as not killed. The score is killed / (mutants run - equivalent): a mutant that no selected test
reaches, or that crashes the test process, counts against its module. Pending mutants (not run yet: an
interrupted `make mutate` resumes them) are left out. `--survivors` lists the not-killed mutants the file does
not judge: each needs a test or a reason.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "caught by type check"}
NOT_KILLED = {"survived", "no tests", "suspicious", "segfault"}
PENDING = "not checked"
KINDS = ("equivalent", "gpu")
JUDGED = Path(__file__).with_name("mutation_equivalents.txt")


def read_results(repo: Path) -> dict[str, str]:
    """{mutant name: status} of every mutant, as `mutmut results --all true` lists them."""
    mutmut = Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=repo, capture_output=True, text=True,
                         check=True).stdout
    results = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            results[name] = status
    return results


def read_judged(path: Path) -> dict[str, str]:
    """{mutant name: 'equivalent' or 'gpu'} from the list of judged survivors ('#' lines give the reasons)."""
    judged = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, kind = line.partition(" ")
        if kind.strip() not in KINDS:
            raise ValueError(f"{path}:{number}: kind {kind.strip()!r} is not one of {', '.join(KINDS)}")
        judged[name] = kind.strip()
    return judged


def module_of(mutant: str) -> str:
    """'cifake.calibration.decision.x_choose_decision__mutmut_3' -> 'cifake.calibration.decision'."""
    return mutant.rsplit(".", 1)[0]


def _row(counts: Counter) -> dict:
    run = counts["killed"] + counts["not killed"]
    counted = run - counts["equivalent"]
    return {"mutants": run + counts["pending"], "killed": counts["killed"], "not_killed": counts["not killed"],
            "equivalent": counts["equivalent"], "gpu": counts["gpu"], "pending": counts["pending"],
            "score": round(counts["killed"] / counted, 4) if counted else None}


def scores(results: dict[str, str], judged: dict[str, str]) -> dict[str, dict]:
    """Per module and over "all": mutants, killed, not killed, judged equivalent, GPU-only, pending, score."""
    by_module: dict[str, Counter] = defaultdict(Counter)
    for mutant, status in results.items():
        counts = by_module[module_of(mutant)]
        if status in KILLED:
            counts["killed"] += 1
        elif status == PENDING:
            counts["pending"] += 1
        else:
            counts["not killed"] += 1
            if status == "survived" and mutant in judged:  # a crash or an unreached mutant is never excused
                counts[judged[mutant]] += 1
    table = {module: _row(by_module[module]) for module in sorted(by_module)}
    table["all"] = _row(sum(by_module.values(), Counter()))
    return table


def stale(results: dict[str, str], judged: dict[str, str]) -> list[str]:
    """Judged mutants that are not survivors any more (killed, renamed by a change, or gone): re-read them."""
    return sorted(name for name in judged if results.get(name, "missing") not in ("survived", PENDING))


def unjudged(results: dict[str, str], judged: dict[str, str]) -> list[str]:
    """'status: name' of each not-killed mutant the list does not judge."""
    return [f"{status}: {name}" for name, status in sorted(results.items())
            if status in NOT_KILLED and not (status == "survived" and name in judged)]


def print_table(table: dict[str, dict]) -> None:
    print(f"{'module':<23} {'mutants':>7} {'killed':>6} {'missed':>6} {'equiv':>5} {'gpu':>3} {'pending':>7} "
          f"{'score':>6}")
    for module, row in table.items():
        score = "-" if row["score"] is None else f"{row['score']:.1%}"
        print(f"{module.removeprefix('cifake.'):<23} {row['mutants']:>7} {row['killed']:>6} {row['not_killed']:>6} "
              f"{row['equivalent']:>5} {row['gpu']:>3} {row['pending']:>7} {score:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--survivors", action="store_true", help="also list the not-killed mutants not judged")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="folder holding mutants/ (default: this repository)")
    parser.add_argument("--judged", type=Path, default=JUDGED, help="the list of judged survivors")
    args = parser.parse_args()
    results = read_results(args.repo)
    if not results:
        sys.exit("no mutmut results here: run `make mutate` first")
    judged = read_judged(args.judged)
    table = scores(results, judged)
    if args.json:
        print(json.dumps(table, indent=1))
    else:
        print_table(table)
    for name in stale(results, judged):
        print(f"judged but not a survivor now, re-read it: {name}", file=sys.stderr)
    if args.survivors:
        for line in unjudged(results, judged):
            print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
