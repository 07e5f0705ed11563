"""The documentation builds (no broken link or missing page), the README stays a front door, and the code stays
in short functions."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
