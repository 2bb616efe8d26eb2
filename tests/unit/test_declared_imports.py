"""Every package the code imports is declared: a package that only arrives as another's
dependency floats with that package's version range, and vanishes when it drops it."""

import ast
import re
import sys
import tomllib
from importlib import metadata

from mlcycle import config

ROOT = config.PROJECT_ROOT
OWN = {"mlcycle", "entrypoints", "__future__"}


def _imported(folders=("mlcycle", "entrypoints")) -> dict[str, set[str]]:
    """Top-level module -> files importing it (imports inside functions included)."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_norm(re.split(r"[=<>!;\s\[]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_a_declared_dependency():
    distributions = metadata.packages_distributions()
    declared = _declared()
    undeclared = {}
    for module, files in _imported().items():
        if module in OWN or module in sys.stdlib_module_names:
            continue
        # mlflow's modules come from mlflow, mlflow-skinny and mlflow-tracing: one is enough.
        owners = {_norm(d) for d in distributions.get(module, [module])}
        if not owners & declared:
            undeclared[module] = sorted(files)
    assert not undeclared, f"imported but not in pyproject dependencies: {undeclared}"
