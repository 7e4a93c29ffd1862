"""The pipeline's shape: each stage's code deps are exactly what its script imports, params are declared key by
key, dependencies point one way, and no module shadows a popular package."""

import ast
import re
from pathlib import Path

import yaml

from conftest import ROOT
from lenscf.params import COUNTED, ENGINE_KEYS, MODEL_NAMES, SOLVED, SOLVER_SHARED, TRAINED

STAGES, PACKAGE = ROOT / "stages", ROOT / "stages" / "lenscf"


def imported_modules(path: Path) -> set[str]:
    """The lenscf modules a file imports directly."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lenscf."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lenscf.")}
    return found


def closure(script: Path) -> set[str]:
    """The script and every lenscf module it imports, directly or through another module, as dvc.yaml paths."""
    todo, seen = imported_modules(script), set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo |= imported_modules(PACKAGE / f"{module}.py")
    return {f"stages/{script.name}"} | {f"stages/lenscf/{m}.py" for m in seen}


def pipeline() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def code_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if d.startswith("stages/")}


def test_each_stages_code_deps_are_exactly_what_its_script_imports() -> None:
    for name, stage in pipeline()["stages"].items():
        body = stage.get("do", stage)
        script = ROOT / body["cmd"].split()[1]
        assert code_deps(body) == closure(script), name


def test_each_model_stage_declares_the_keys_it_reads() -> None:
    pipe = pipeline()
    stages = pipe["stages"]
    trained = stages["train"]["do"]["params"]
    assert set(trained) == {*ENGINE_KEYS, "models.${item}"}
    assert stages["count"]["do"]["params"] == ["models.${item}"]  # no engine: a change of lr leaves them alone
    assert stages["solve"]["do"]["params"] == [*SOLVER_SHARED, "models.${item}"]  # nor the solver's batches
    variables = {k: v for entry in pipe["vars"] for k, v in entry.items()}
    assert variables["trained_models"] == list(TRAINED) and variables["counted_models"] == list(COUNTED)
    assert variables["solved_models"] == list(SOLVED)
    assert variables["all_models"] == list(MODEL_NAMES)


def test_no_output_turns_the_run_cache_off() -> None:
    """An uncached entry under outs or a stage's plots disables DVC's run-cache for its whole stage."""
    for name, stage in pipeline()["stages"].items():
        body = stage.get("do", stage)
        for entry in body.get("outs", []) + body.get("plots", []):
            assert isinstance(entry, str) or all(opts.get("cache", True) for opts in entry.values()), name


def test_dependencies_point_one_way() -> None:
    """The order in lenscf/__init__.py's docstring: a module imports only modules listed before it."""
    order = re.findall(r"^    (\w+) ", (PACKAGE / "__init__.py").read_text(), re.M)
    assert sorted(order) == sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    for module in order:
        for imported in imported_modules(PACKAGE / f"{module}.py"):
            assert order.index(imported) < order.index(module), f"{module} imports {imported}"
    for pure in ("models", "scoring", "metrics"):
        assert not {"params", "releases"} & closure_of(pure), pure
    assert "engine" not in closure_of("evaluation") and "engine" not in closure(STAGES / "evaluate.py")


def closure_of(module: str) -> set[str]:
    return {Path(p).stem for p in closure(PACKAGE / f"{module}.py")} - {module}


def test_only_entry_points_and_the_package_sit_on_sys_path() -> None:
    """`python stages/x.py` puts stages/ first on sys.path: a library module there (datasets.py, fetch.py, ...)
    would shadow the PyPI package of that name. Only the stage scripts and the package live there."""
    scripts = {p.stem for p in STAGES.glob("*.py")}
    assert scripts == {"download", "split", "encode", "train", "evaluate", "recommend"}
    assert {p.name for p in STAGES.iterdir() if p.is_dir() and p.name != "__pycache__"} == {"lenscf"}


def test_stage_scripts_import_only_what_they_use() -> None:
    """The data stages start without torch: a cold `dvc repro` pays its import only where a model is."""
    for script in ("download.py", "split.py", "encode.py"):
        modules = closure(STAGES / script)
        sources = "\n".join((ROOT / m).read_text() for m in modules)
        assert not re.search(r"^import torch|^from torch", sources, re.M), script
        assert not re.search(r"^import pandas", sources, re.M), script


def test_readme_layout_matches_the_tree() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem != "__init__":
            assert f"{path.stem}.py" in layout, path.name
    for script in sorted(STAGES.glob("*.py")):
        assert script.name in layout, script.name
