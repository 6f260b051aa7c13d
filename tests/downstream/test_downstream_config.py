from pathlib import Path

import pytest

from uterosynth.core.config import load_config
from uterosynth.core.errors import ConfigError
from uterosynth.downstream.config import DownstreamConfig, JudgeConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_default_preset_equals_model_defaults():
    assert load_config(DownstreamConfig, CONFIGS / "downstream.yaml") == DownstreamConfig()
    assert DownstreamConfig().seeds == [0, 1, 2] and DownstreamConfig().budgets == [0.05, 0.1, 0.25, 0.5, 1.0]


def test_quick_preset_is_smaller():
    quick = load_config(DownstreamConfig, CONFIGS / "downstream_quick.yaml")
    assert len(quick.budgets) * quick.n_seeds < len(DownstreamConfig().budgets) * DownstreamConfig().n_seeds


def test_budget_out_of_range():
    with pytest.raises(ConfigError, match="budgets"):
        load_config(DownstreamConfig, overrides={"budgets": [0.0, 1.0]})


def test_real_only_cannot_be_switched_off():
    with pytest.raises(ConfigError, match="protocols.real must stay on"):
        load_config(DownstreamConfig, overrides={"protocols.real": False})


def test_judge_config_round_trip():
    cfg = JudgeConfig(task="field_strength", seed=3)
    assert JudgeConfig.model_validate_json(cfg.model_dump_json()) == cfg
