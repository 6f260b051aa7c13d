from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from uterosynth.core.config import (
    StrictModel,
    config_hash,
    load_config,
    merge_config,
    parse_overrides,
    read_config_file,
    split_assignment,
)
from uterosynth.core.errors import ConfigError


class Train(StrictModel):
    lr: float = Field(1e-4, gt=0)
    steps: int = Field(10, ge=1)


class Stage(StrictModel):
    name: str = "x"
    train: Train = Train()


def test_defaults_without_file():
    cfg = load_config(Stage)
    assert cfg.train.lr == 1e-4 and cfg.name == "x"


def test_yaml_and_overrides(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\n")
    cfg = load_config(Stage, path, overrides=parse_overrides(["train.steps=5", "name=y"]))
    assert (cfg.train.lr, cfg.train.steps, cfg.name) == (0.01, 5, "y")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("train:\n  lrr: 1\n", "key 'train.lrr': unknown key"),
        ("train:\n  lr: -1\n", "key 'train.lr'"),
        ("train:\n  steps: many\n", "key 'train.steps'"),
        ("- a\n- b\n", "expected a mapping"),
        ("train: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(Stage, path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Stage, tmp_path / "nope.yaml")


def test_bad_override():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.lr"])


def test_config_is_frozen_and_hash_stable():
    a, b = Stage(), Stage()
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(Stage(name="z"))
    with pytest.raises(ValidationError):
        a.name = "changed"  # type: ignore[misc]


def test_base_file_is_laid_under_the_file(tmp_path: Path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "base.yaml").write_text("name: base\ntrain:\n  lr: 0.01\n  steps: 7\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: presets/base.yaml\ntrain:\n  steps: 3\n")
    cfg = load_config(Stage, child, overrides={"name": "top"})
    assert (cfg.name, cfg.train.lr, cfg.train.steps) == ("top", 0.01, 3)


def test_bases_chain_and_lists_replace(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("x: [1, 2, 3]\ny: {p: 1, q: 2}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ny: {q: 5}\n")
    (tmp_path / "c.yaml").write_text("base: b.yaml\nx: [9]\n")
    assert read_config_file(tmp_path / "c.yaml") == {"x": [9], "y": {"p": 1, "q": 5}}


def test_base_cycle_is_refused_naming_the_files(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(Stage, tmp_path / "a.yaml")


def test_missing_base_names_the_file(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: config file not found"):
        load_config(Stage, tmp_path / "a.yaml")


def test_base_must_be_a_path(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("base: [1]\n")
    with pytest.raises(ConfigError, match="key 'base'"):
        load_config(Stage, tmp_path / "a.yaml")


def test_merge_config_keeps_the_base_unchanged():
    base = {"train": {"lr": 1, "steps": 2}}
    assert merge_config(base, {"train": {"steps": 3}, "name": "n"}) == {"train": {"lr": 1, "steps": 3}, "name": "n"}
    assert base == {"train": {"lr": 1, "steps": 2}}


@pytest.mark.parametrize(("text", "pair"), [("a=1", ("a", "1")), (" a.b = x=y", ("a.b", " x=y")), ("k=", ("k", ""))])
def test_split_assignment(text, pair):
    assert split_assignment(text, empty_value=True) == pair


@pytest.mark.parametrize("text", ["novalue", "=1", "k=", "k= "])
def test_split_assignment_refuses(text):
    with pytest.raises(ConfigError, match=f"--thing '{text}': expected A=B"):
        split_assignment(text, what="--thing", expected="A=B")


def test_a_null_override_sets_the_key_to_null(tmp_path: Path):
    """``--set train.ema_decay=null`` turns off what the file turned on; on a key that cannot be null it is
    an error naming the key (it used to be dropped silently, leaving the file's value)."""

    class Loop(StrictModel):
        ema_decay: float | None = None
        steps: int = 10

    class Run(StrictModel):
        train: Loop = Loop()

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  ema_decay: 0.999\n")
    assert load_config(Run, path).train.ema_decay == 0.999
    assert load_config(Run, path, overrides=parse_overrides(["train.ema_decay=null"])).train.ema_decay is None
    assert load_config(Run, path, overrides=parse_overrides(["train.ema_decay="])).train.ema_decay == 0.999  # not given
    with pytest.raises(ConfigError, match="train.steps"):
        load_config(Run, path, overrides=parse_overrides(["train.steps=null"]))
