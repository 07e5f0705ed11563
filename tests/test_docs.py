"""The documentation builds (no broken link or missing page), the README stays a front door, and the code stays
in short functions."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_docs_build_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is in the dev extra (make install)"
    built = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                           capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1",
                                                                           "PATH": "/usr/bin:/bin"})
    assert built.returncode == 0, built.stderr
    pages = yaml_nav_pages()
    assert {p.name for p in (REPO / "docs").glob("*.md")} == set(pages)  # every page is in the navigation
    for page in pages:
        assert (tmp_path / "site" / (page[:-3] if page != "index.md" else "") / "index.html").is_file(), page


def yaml_nav_pages() -> list[str]:
    return re.findall(r":\s*(\S+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.MULTILINE)


def test_the_readme_is_a_front_door_and_no_page_tells_the_project_history():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 15_000
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).is_file(), link
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        text = path.read_text().lower()
        for phrase in ("this session", "frozen with sigstop", "issue #", "not re-measured", "no-fused-adam"):
            assert phrase not in text, f"{path.name}: {phrase}"


def test_no_function_in_the_package_is_50_lines_or_longer():
    long = []
    for path in (REPO / "src" / "cifake").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length >= 50:
                    long.append(f"{path.relative_to(REPO)}:{node.name} ({length} lines)")
    assert not long, long


# --- the house: floors, one-way imports, small files (docs/architecture.md) -------------------------------------

FLOORS = {  # a module may import its own floor and those below, never one above
    # the package face `cifake` holds the version and names the API, resolved on first use (no import statement)
    "foundation": {"cifake", "choices", "errors", "files", "progress", "report", "devices", "runfolder", "settings",
                   "cluster", "compat"},
    "libraries": {"data", "models", "metrics", "training", "calibration", "explain", "predict", "serve", "generate",
                  "search"},
    "workflows": {"workflows"},
    "commands": {"cli", "__main__"},
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cifake"


def _floor(module: str) -> int:
    room = _room(module)
    return next(i for i, (_, rooms) in enumerate(FLOORS.items()) if room in rooms)


def _import_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (at the top or inside a function)."""
    graph = {}
    for path in (REPO / "src" / "cifake").rglob("*.py"):
        parts = path.relative_to(REPO / "src").with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifake"):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("cifake")}
        graph[name] = imported
    return graph


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} -> {b}" for a, targets in graph.items() for b in targets if _floor(b) > _floor(a)]


def _circles(graph: dict[str, set[str]]) -> list[str]:
    """Rooms that reach themselves through other rooms' imports."""
    rooms: dict[str, set[str]] = {}
    for a, targets in graph.items():
        rooms.setdefault(_room(a), set()).update(_room(b) for b in targets if _room(b) != _room(a))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
                   for nxt in rooms.get(start, ()))

    return sorted(room for room in rooms if reaches(room, room, {room}))


def test_no_import_runs_up_a_floor_and_no_room_imports_in_a_circle():
    graph = _import_graph()
    assert not _upward(graph), _upward(graph)
    assert not _circles(graph), _circles(graph)


def test_the_floors_name_every_room_and_the_rules_catch_what_they_are_for():
    rooms = {_room(name) for name in _import_graph()}
    assert rooms <= set().union(*FLOORS.values()), rooms - set().union(*FLOORS.values())
    # a library reaching a workflow (as the search's status once reached the runner), and two libraries in a circle
    assert _upward({"cifake.search.status": {"cifake.workflows.search", "cifake.models"}}) == [
        "cifake.search.status -> cifake.workflows.search"]
    assert _circles({"cifake.predict.detector": {"cifake.explain.gradcam"},
                     "cifake.explain.run": {"cifake.predict.detector"}, "cifake.models.io": {"cifake.files"}}) == [
        "explain", "predict"]


def test_no_source_file_over_300_lines_and_benchmarks_under_1300():
    long = [f"{p.relative_to(REPO)} ({n})" for p in (REPO / "src" / "cifake").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300]
    assert not long, long
    benchmarks = sum(len(p.read_text().splitlines()) for p in (REPO / "benchmarks").iterdir() if p.is_file())
    assert benchmarks < 1300, benchmarks  # one-off experiments are retired, not kept (docs/experiments.md)


def test_every_planted_bug_still_finds_its_text_and_its_tests():
    checked = subprocess.run([sys.executable, str(REPO / "tools" / "planted_bugs.py"), "--check"],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_under_mutmut_a_mutants_tests_run_file_by_file_quickest_first(tmp_path, monkeypatch):
    """conftest's ordering, against an order written by hand from made-up durations: b.py's one test (1 s) before
    a.py's two (3.1 s in all), though a.py holds the quickest, and a.py's quicker test first; outside mutmut the
    order is left as it came."""
    import json
    from types import SimpleNamespace

    import conftest

    durations = {"tests/b.py::z": 1.0, "tests/a.py::x": 3.0, "tests/a.py::y": 0.1}
    (tmp_path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": durations}))
    items = [SimpleNamespace(nodeid=name, path=Path(name.split("::")[0])) for name in
             ("tests/a.py::x", "tests/b.py::z", "tests/a.py::y")]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUTANT_UNDER_TEST", raising=False)
    conftest._mutmut_durations.cache_clear()
    unordered = list(items)
    conftest.pytest_collection_modifyitems(None, unordered)
    assert [item.nodeid for item in unordered] == ["tests/a.py::x", "tests/b.py::z", "tests/a.py::y"]
    monkeypatch.setenv("MUTANT_UNDER_TEST", "cifake.some.x_function__mutmut_1")
    conftest.pytest_collection_modifyitems(None, items)
    conftest._mutmut_durations.cache_clear()
    assert [item.nodeid for item in items] == ["tests/b.py::z", "tests/a.py::y", "tests/a.py::x"]


def test_the_mutation_score_leaves_out_only_survivors_judged_equivalent(tmp_path):
    """A made-up module of 8 mutants, scored by hand: 4 killed (a timeout among them), 1 pending, 3 not killed, of
    which 1 survivor is judged equivalent and 1 needs a GPU; a crash listed as equivalent is not excused. Score:
    4 / (7 - 1). A listed mutant that is killed now is named for re-reading."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import mutation_score
    finally:
        sys.path.pop(0)
    m = "cifake.room.x_f__mutmut_"
    results = {m + "1": "killed", m + "2": "killed", m + "3": "timeout", m + "4": "killed", m + "5": "not checked",
               m + "6": "survived", m + "7": "survived", m + "8": "segfault"}
    listed = tmp_path / "judged.txt"
    listed.write_text(f"# why\n{m}6 equivalent\n{m}7 gpu\n\n# a crash\n{m}8 equivalent\n{m}1 equivalent\n")
    judged = mutation_score.read_judged(listed)
    row = mutation_score.scores(results, judged)["cifake.room"]
    assert row == {"mutants": 8, "killed": 4, "not_killed": 3, "equivalent": 1, "gpu": 1, "pending": 1,
                   "score": round(4 / 6, 4)}
    assert mutation_score.stale(results, judged) == [m + "1", m + "8"]
    assert mutation_score.unjudged(results, judged) == [f"segfault: {m}8"]  # 7 has its reason: a GPU
    listed.write_text(f"{m}6 equivalnet\n")
    with pytest.raises(ValueError, match=r"judged\.txt:1: kind 'equivalnet'"):
        mutation_score.read_judged(listed)


def test_every_judged_mutant_names_a_mutated_module_and_carries_a_reason():
    import fnmatch
    import tomllib

    mutated = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    lines = (REPO / "tools" / "mutation_equivalents.txt").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith("#"):
            path = "src/" + line.split(".x", 1)[0].replace(".", "/") + ".py"
            assert any(fnmatch.fnmatch(path, pattern) for pattern in mutated), line
            above = next(lines[i] for i in range(number - 1, -1, -1) if not lines[i] or lines[i].startswith("#"))
            assert above.startswith("#"), f"{line}: no reason above its group"
