"""Library errors are library errors: outside ``cli/`` nothing raises a bare ``UserError`` (nor
subclasses it past ``DataError`` / ``ConfigError``) and no error message names a command-line flag.

The library raises :class:`~uterosynth.core.errors.DataError` (unusable data on disk),
:class:`~uterosynth.core.errors.ConfigError` (an invalid config key or value) or a builtin such
as ``ValueError`` for a broken calling contract. Its messages speak of files and config keys;
only the ``cli`` layer knows which flag sets which key.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import uterosynth

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
EXEMPT = ("cli",)  # packages below uterosynth whose messages may name flags
ERRORS = Path("core", "errors.py")  # where UserError and its two subclasses live


def _raised_strings(node: ast.Raise) -> list[str]:
    """Every string constant inside the raise expression (f-string parts included)."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _is_user_error(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "UserError") or (
        isinstance(node, ast.Attribute) and node.attr == "UserError")


def _raises_user_error(node: ast.Raise) -> bool:
    return _is_user_error(node.exc.func if isinstance(node.exc, ast.Call) else node.exc)


def library_error_problems(root: Path, exempt: tuple[str, ...] = EXEMPT) -> list[str]:
    """``file:line: reason`` for each bare ``UserError`` raise or subclass and each flag named in a raise."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in exempt:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and rel != ERRORS and any(_is_user_error(b) for b in node.bases):
                problems.append(f"{path}:{node.lineno}: class {node.name} subclasses UserError; subclass DataError "
                                "or ConfigError")
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            if _raises_user_error(node):
                problems.append(f"{path}:{node.lineno}: raises bare UserError; use DataError, ConfigError "
                                "or a builtin")
            flags = sorted({m for s in _raised_strings(node) for m in FLAG.findall(s)})
            if flags:
                problems.append(f"{path}:{node.lineno}: message names CLI flag(s) {', '.join(flags)}; "
                                "name the config key or file instead")
    return problems


def test_library_raises_no_user_error_and_names_no_flags():
    problems = library_error_problems(Path(uterosynth.__file__).parent)
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(("source", "expected"), [
    ("from .errors import UserError\nraise UserError('bad')\n", "bare UserError"),
    ("from . import errors\nraise errors.UserError('bad')\n", "bare UserError"),
    ("raise ValueError('pass --allow-overlap to go on')\n", "--allow-overlap"),
    ("def f(k):\n    raise ValueError(f'use --set {k}=1')\n", "--set"),
    ("from .errors import UserError\nclass StopError(UserError):\n    pass\n", "subclasses UserError"),
])
def test_planted_problem_is_found(tmp_path, source, expected):
    root = tmp_path / "uterosynth"
    (root / "core").mkdir(parents=True)
    (root / "core" / "a.py").write_text(source)
    problems = library_error_problems(root)
    assert len(problems) == 1 and expected in problems[0], problems


def test_clean_and_exempt_code_passes(tmp_path):
    root = tmp_path / "uterosynth"
    (root / "core").mkdir(parents=True)
    (root / "cli").mkdir()
    (root / "core" / "a.py").write_text(
        "from .errors import ConfigError, DataError\n"
        "raise ConfigError('train.steps must be >= 1; set train.steps in the config')\n"
        "raise DataError('x.nii.gz: expected 3-D, found 2-D -- re-export the scan')\n"
        "raise ValueError('a --- b, em-dash-free --, and x--y are not flags')\n"
        "print('--not-in-a-raise')\n")
    (root / "cli" / "b.py").write_text("raise UserError('pass --allow-overlap')\n")
    assert library_error_problems(root) == []


@pytest.mark.parametrize(("keys", "args", "hint"), [
    (("out", "overwrite"), ["phantom", "--out", "x"], " (command line: --out, --overwrite)"),
    (("allow_overlap",), ["evaluate", "baselines"], " (command line: --allow-overlap)"),
    (("sampler.steps", "conditions"), ["--debug", "sample"], " (command line: --steps, --condition)"),
    (("baselines", "extractor.path"), ["evaluate"], " (command line: --baseline, --extractor)"),
    (("model.spatial_dims",), ["train", "autoencoder"], " (command line: --set model.spatial_dims=...)"),
    (("db_url",), ["reader-study", "serve", "study"], " (command line: --db-url)"),
    (("model.spatial_dims",), ["demo"], ""),
    ((), ["phantom"], ""),
])
def test_cli_names_the_flags_for_an_errors_keys(keys, args, hint):
    from uterosynth.cli import flag_hint

    assert flag_hint(keys, args) == hint


def test_cli_adds_the_flag_hint_to_a_library_error(tmp_path, capsys):
    from uterosynth.cli import main

    with pytest.raises(SystemExit) as info:
        main(["demo", "--dims", "4", "--out", str(tmp_path / "demo")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err == "error: dims: expected 2 or 3, got 4 (command line: --dims)"
    assert not (tmp_path / "demo").exists()
