"""The package tree is the architecture: layers import only downward, DESIGN.md draws the tree that
is there, and no function or class grows past a screenful."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "batchscore"
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 250


def lint_imports(tree: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """import-linter's `lint-imports` on the package in `tree`, with the contracts of its pyproject."""
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", command], cwd=tree, env=env, capture_output=True, text=True)


def test_every_import_goes_down_the_layers():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract is not vacuous: a copy of the package where io imports the pipeline fails it."""
    import shutil

    copy = tmp_path / "tree"
    shutil.copytree(PACKAGE, copy / "batchscore", ignore=shutil.ignore_patterns("models", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with open(copy / "batchscore" / "io" / "console.py", "a") as handle:
        handle.write("\nfrom batchscore.pipeline import plan  # noqa\n")
    run = lint_imports(copy, env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert run.returncode != 0
    assert "batchscore.io is not allowed to import batchscore.pipeline" in run.stdout


def test_design_draws_the_tree_that_is_there():
    """Every entry of `ls batchscore/` is in DESIGN.md's tree, and the tree names nothing else."""
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    tree = design.split("```\nbatchscore/\n", 1)[1].split("```", 1)[0]
    drawn = set()
    for line in tree.splitlines():
        if line.startswith("   "):  # a description carried on to the next line
            continue
        drawn.update(re.split(r"\s{3,}", line.strip(), maxsplit=1)[0].split())
    present = {
        path.name + ("/" if path.is_dir() else "")
        for path in PACKAGE.iterdir()
        if path.name not in ("__pycache__", "py.typed")
    }
    assert drawn == present


def _sizes():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield path.relative_to(ROOT), node, node.end_lineno - node.lineno + 1


def test_functions_and_classes_stay_small():
    too_long = [
        f"{path}:{node.lineno} {node.name} ({lines} lines)"
        for path, node, lines in _sizes()
        if lines > (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES)
    ]
    assert too_long == []
