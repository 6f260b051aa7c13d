"""Imports run downward only: every module's imports (top level and inside functions) obey LAYERS.

A package may import its own layer or a lower one; a stage package may not import another
stage package (stages talk through artifacts, read with the ``data`` modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import uterosynth

# package (first name below ``uterosynth``) -> layer; imports may only go to an equal or lower layer
LAYERS: dict[str, int] = {
    "core": 0,  # errors, seeding, config, artifacts, checkpoint, distributed, similarity
    "data": 1, "diffusion": 1, "models": 1, "phantom": 1,  # building blocks
    "training": 2, "sampling": 2, "evaluation": 2, "privacy": 2,  # stages
    "downstream": 2, "release": 2, "reader_study": 2,
    "stages": 3, "pipeline": 3, "pipeline_report": 3, "demo": 3,  # typed stage entry points and chains of stages
    "study": 3, "study_report": 3,  # grids of chains
    "distill": 3,  # a chain of two stages: the teacher samples, the student trains
    "cli": 4, "__main__": 4,  # the command line
    "__init__": 0,  # the package root holds only the version
}
STAGE_LAYER = 2

# Known imports that still break the rule, each with the reason; remove an entry once fixed.
ALLOWED: dict[tuple[str, str], str] = {}


def package_of(module: str) -> str:
    """``uterosynth.a.b`` -> ``a``; ``uterosynth`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path, module: str, root: Path) -> list[tuple[int, str]]:
    """Absolute names of every ``uterosynth`` module ``path`` imports (anywhere in the file).

    ``from pkg import name`` counts as ``pkg.name`` when that is a module under ``root``.
    """

    def is_module(name: str) -> bool:
        rel = Path(*name.split(".")[1:])
        return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()

    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "uterosynth"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" if is_module(f"{target}.{a.name}") else target for a in node.names]
            else:
                names = [node.module or ""]
            out += [(node.lineno, n) for n in names if n.split(".")[0] == "uterosynth"]
    return out


def layer_violations(root: Path, package: str = "uterosynth", layers: dict[str, int] = LAYERS,
                     allowed: dict[tuple[str, str], str] | None = None) -> list[str]:
    """``file:line: a -> b`` for every import of a higher layer or of another stage package."""
    allowed = ALLOWED if allowed is None else allowed
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        source = package_of(module)
        if source not in layers:
            problems.append(f"{path}: package '{source}' has no layer in LAYERS")
            continue
        for line, target_module in imported_modules(path, module, root):
            target = package_of(target_module.replace(package, "uterosynth", 1))
            if target == source or (source, target) in allowed:
                continue
            if target not in layers:
                problems.append(f"{path}:{line}: imports '{target_module}', a package with no layer in LAYERS")
            elif layers[target] > layers[source]:
                problems.append(f"{path}:{line}: {source} (layer {layers[source]}) imports {target_module} "
                                f"(layer {layers[target]})")
            elif layers[target] == layers[source] == STAGE_LAYER:
                problems.append(f"{path}:{line}: stage {source} imports stage {target} ({target_module}); "
                                "read its artifact through uterosynth.data instead")
    return problems


def test_imports_run_downward_only():
    root = Path(uterosynth.__file__).parent
    assert layer_violations(root) == []


def test_allowed_exceptions_are_still_needed():
    root = Path(uterosynth.__file__).parent
    for pair in ALLOWED:
        assert layer_violations(root, allowed={k: v for k, v in ALLOWED.items() if k != pair}), (
            f"{pair} no longer imports across layers: remove it from ALLOWED")


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "uterosynth"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"core/a.py": "def f():\n    from ..models import b\n", "models/b.py": ""}, "core (layer 0) imports uterosynth.models"),
    ({"models/a.py": "from uterosynth.training.loop import x\n", "training/loop.py": ""}, "models (layer 1) imports"),
    ({"diffusion/a.py": "import uterosynth.sampling.generate\n", "sampling/generate.py": ""}, "diffusion (layer 1)"),
    ({"training/a.py": "from ..sampling import generate\n", "sampling/generate.py": ""}, "stage training imports stage sampling"),
    ({"phantom/a.py": "from ..cli import main\n", "cli/__init__.py": ""}, "phantom (layer 1) imports uterosynth.cli"),
])
def test_planted_violation_is_found(tmp_path, files, expected):
    root = _package(tmp_path, files)
    problems = layer_violations(root, allowed={})
    assert len(problems) == 1 and expected in problems[0], problems


def test_clean_package_and_unknown_package(tmp_path):
    root = _package(tmp_path, {"training/a.py": "from ..core import errors\nfrom ..data import manifest\n"
                                                "from . import b\n", "training/b.py": "", "core/errors.py": "",
                               "data/manifest.py": ""})
    assert layer_violations(root, allowed={}) == []
    root = _package(tmp_path / "x", {"extras/a.py": ""})
    assert "no layer" in layer_violations(root, allowed={})[0]
