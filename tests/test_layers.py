"""Layering rules that keep the import graph readable (issue 20).

- modules evaluation builds on (adapters, the ensemble, geometry, video, the pipeline...) do not
  import `primedepth.eval`: the scale-and-shift fit they share lives in `primedepth.alignment`,
  which imports nothing of the package but its errors;
- benchmarks import the package, never the tests (they must run from an installed package).
"""

from __future__ import annotations

import ast
from pathlib import Path

import primedepth

PACKAGE = Path(primedepth.__file__).parent
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# Evaluation's consumers, which sit above it: the CLI, training's validation (the protocol's
# metrics) and the video benchmark's accuracy metric. Everything else is below or beside eval.
EVAL_CONSUMERS = ("eval/", "commands/", "train/")


def _module_name(path: Path) -> str:
    """The dotted name of a package file (a package's `__init__.py`: the package's name)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("primedepth", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def imported_names(path: Path, module: str | None = None) -> set[str]:
    """Absolute names a source file imports, relative imports resolved against `module`
    (the file's dotted name; for `__init__.py`, the package's)."""
    package = ""
    if module is not None:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(part for part in (base, node.module or "") if part)
            names.update([target, *(f"{target}.{alias.name}" for alias in node.names)])
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _imports_below(path: Path, root: str) -> bool:
    return any(name == root or name.startswith(root + ".") for name in imported_names(path, _module_name(path)))


def test_only_evaluation_consumers_import_eval():
    offenders = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.relative_to(PACKAGE).as_posix().startswith(EVAL_CONSUMERS) and _imports_below(path, "primedepth.eval")
    ]
    assert offenders == []


def test_the_alignment_module_imports_only_the_errors():
    path = PACKAGE / "alignment.py"
    package_names = {name for name in imported_names(path, _module_name(path)) if name.startswith("primedepth")}
    assert package_names <= {"primedepth.errors", "primedepth.errors.InputError"}


def test_the_import_check_resolves_relative_imports(tmp_path):
    """The checks above would pass vacuously if relative imports were not resolved."""
    nested = PACKAGE / "video" / "fit.py"
    assert "primedepth.alignment.fit_scale_shift" in imported_names(nested, _module_name(nested))
    assert _module_name(PACKAGE / "eval" / "__init__.py") == "primedepth.eval"
    source = tmp_path / "__init__.py"
    source.write_text("from .alignment import align\nfrom ..errors import InputError\n")
    assert imported_names(source, "primedepth.eval") >= {"primedepth.eval.alignment.align", "primedepth.errors.InputError"}


def test_benchmarks_do_not_import_tests():
    offenders = [
        path.name
        for path in sorted(BENCHMARKS.glob("*.py"))
        if any(name == "tests" or name.startswith("tests.") for name in imported_names(path))
    ]
    assert offenders == []
