"""The wings of the package import one way (mlcycle/__init__.py draws the house): each
wing only the wings below it, the foundation no wing, nothing below the steps imports
mlcycle.steps. Imports are read with ast, those inside functions included."""

import ast

from mlcycle import config

PACKAGE = config.PROJECT_ROOT / "mlcycle"
FOUNDATION = {"config", "errors", "params", "signals", "telemetry"}
# What each wing may import besides the foundation and itself.
BELOW = {
    "ingest": set(),
    "monitoring": {"ingest"},
    "models": {"ingest", "monitoring"},
    "lifecycle": {"ingest", "monitoring"},
    "scaleout": {"ingest", "monitoring", "models"},
}
WINGS = set(BELOW)
# Re-exports kept at the old paths for models logged before the wings.
OLD_PATHS = {"network": {"models"}, "served_forest": {"models"}}


def place(module: str) -> str:
    """mlcycle.models.network -> 'models'; mlcycle.config -> 'config'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports() -> list[tuple[str, str]]:
    """(importing module, imported mlcycle module) for every import in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module == "mlcycle":
                    names = [f"mlcycle.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [(module, name) for name in names if name.startswith("mlcycle.")]
    return found


def allowed(importer: str, imported: str) -> bool:
    source, target = place(importer), place(imported)
    if source == "steps":
        return True
    if target == "steps":
        return False
    if source in OLD_PATHS:
        return target in OLD_PATHS[source]
    if source in FOUNDATION:
        return target in FOUNDATION
    if source in WINGS:
        return target in FOUNDATION | BELOW[source] | {source}
    return target not in OLD_PATHS  # the commands at the top: any wing


def test_every_import_goes_down_the_wings():
    wrong = sorted(f"{a} -> {b}" for a, b in imports() if not allowed(a, b))
    assert not wrong, "imports against the wings:\n" + "\n".join(wrong)


def test_every_module_lives_in_a_wing_or_is_a_known_top_level_one():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    commands = {"cli", "options", "summary", "replay", "dashboard"}
    assert top == FOUNDATION | commands | set(OLD_PATHS)
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == WINGS | {"steps"}


def test_the_check_sees_a_wrong_way_import():
    assert not allowed("mlcycle.ingest.data", "mlcycle.models.network")
    assert not allowed("mlcycle.monitoring.gate", "mlcycle.models.candidates")
    assert not allowed("mlcycle.config", "mlcycle.ingest.data")
    assert not allowed("mlcycle.cli", "mlcycle.steps.etl")
    assert not allowed("mlcycle.models.training", "mlcycle.network")
    assert allowed("mlcycle.models.candidates", "mlcycle.monitoring.gate")
    assert ("mlcycle.models.candidates", "mlcycle.monitoring.gate") in imports()
