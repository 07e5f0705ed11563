"""The mutation score per module, from the results `mutmut run` left in mutants/ (run by `make mutate`).

    python tools/mutation_score.py [--json] [--survivors]

A mutant is killed when a test failed or timed out with it. The score is killed / (killed + survived + untested):
a mutant that no selected test reaches counts against the module, as it would go unnoticed. Pending mutants
(not run yet: an interrupted `make mutate` resumes them) are left out of the score.
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


def module_of(mutant: str) -> str:
    """'cifake.calibration.decision.x_choose_decision__mutmut_3' -> 'cifake.calibration.decision'."""
    return mutant.rsplit(".", 1)[0]


def scores(results: dict[str, str]) -> dict[str, dict]:
    by_module: dict[str, Counter] = defaultdict(Counter)
    for mutant, status in results.items():
        by_module[module_of(mutant)][status] += 1
    table = {}
    for module in sorted(by_module):
        counts = by_module[module]
        killed = sum(counts[s] for s in KILLED)
        counted = killed + sum(counts[s] for s in NOT_KILLED)
        table[module] = {"mutants": sum(counts.values()), "killed": killed, "survived": counts["survived"],
                         "untested": counts["no tests"], "pending": counts["not checked"],
                         "score": round(killed / counted, 4) if counted else None}
    killed = sum(row["killed"] for row in table.values())
    counted = sum(row["killed"] + row["survived"] + row["untested"] for row in table.values())
    table["all"] = {"mutants": sum(row["mutants"] for row in table.values()), "killed": killed,
                    "survived": sum(row["survived"] for row in table.values()),
                    "untested": sum(row["untested"] for row in table.values()),
                    "pending": sum(row["pending"] for row in table.values()),
                    "score": round(killed / counted, 4) if counted else None}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--survivors", action="store_true", help="also list the mutants no test killed")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="folder holding mutants/ (default: this repository)")
    args = parser.parse_args()
    results = read_results(args.repo)
    if not results:
        sys.exit("no mutmut results here: run `make mutate` first")
    table = scores(results)
    if args.json:
        print(json.dumps(table, indent=1))
    else:
        print(f"{'module':<22} {'mutants':>7} {'killed':>6} {'survived':>8} {'untested':>8} {'pending':>7} "
              f"{'score':>6}")
        for module, row in table.items():
            score = "-" if row["score"] is None else f"{row['score']:.1%}"
            print(f"{module.removeprefix('cifake.'):<22} {row['mutants']:>7} {row['killed']:>6} {row['survived']:>8} "
                  f"{row['untested']:>8} {row['pending']:>7} {score:>6}")
    if args.survivors:
        for mutant, status in sorted(results.items()):
            if status in NOT_KILLED:
                print(f"{status}: {mutant}", file=sys.stderr)


if __name__ == "__main__":
    main()
