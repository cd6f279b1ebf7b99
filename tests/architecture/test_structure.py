"""The code base keeps its shape: floors and contracts (import-linter, configured in
pyproject.toml), no import cycle between any two modules, modules and functions of a readable size.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "app")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                  if "migrations" not in path.parts)


def test_import_linter_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
        "lint-imports")
    if lint is None:
        pytest.fail("import-linter is not installed: install the dev extras (`make test` does)")
    result = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_any_two_modules():
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    edges = {module: {other for other in graph.find_modules_directly_imported_by(module)
                      if other in graph.modules} for module in graph.modules}
    assert _strongly_connected(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]


def test_modules_stay_readable():
    too_long = {str(path.relative_to(ROOT)): n for path in _sources()
                if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert too_long == {}


def test_functions_stay_short():
    too_long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(ROOT)}:{node.name}"] = length
    assert too_long == {}


def test_every_module_says_what_it_owns():
    missing = [str(path.relative_to(ROOT)) for path in _sources()
               if path.stat().st_size and ast.get_docstring(ast.parse(path.read_text())) is None]
    assert missing == []


def test_the_command_line_starts_without_torch():
    """Building the parser (every `mlic` command, `--version` included) must not import torch:
    commands import it inside their handlers, only when they run a model."""
    code = ("import sys; from engine.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'torchvision', 'cv2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_add_folder_loads_no_model_stack(tmp_path):
    """`mlic add-folder` only reads headers: it must not load torch, torchvision, OpenCV or the
    review stack (cleanlab, scikit-learn, scipy), which take seconds to import (issue 16), nor
    Alembic when the project's schema is already the newest."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (8, 8), "red").save(folder / "a.jpg")
    code = ("import sys; from engine.cli.main import main; "
            f"code = main(['--project', {str(tmp_path / 'p')!r}, 'add-folder', {str(folder)!r}]); "
            "heavy = ('torch', 'torchvision', 'cv2', 'cleanlab', 'sklearn', 'scipy', 'PySide6', "
            "'alembic'); "
            "print(code, sorted(m for m in heavy if m in sys.modules))")
    subprocess.run([sys.executable, "-m", "engine", "--project", str(tmp_path / "p"), "init"],
                   cwd=ROOT, capture_output=True, check=True)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "0 []"
