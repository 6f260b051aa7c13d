from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from uterosynth.core.config import StrictModel, config_hash, load_config, parse_overrides
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
