"""Membership inference: a memorising model is recognised, an oblivious one is not; the command's checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_prepared_dataset
from uterosynth.cli import main
from uterosynth.core.config import load_config
from uterosynth.data.manifest import PreparedDataset
from uterosynth.diffusion.schedule import NoiseSchedule, NoiseScheduleConfig
from uterosynth.models.diffusion import DiffusionModel
from uterosynth.privacy.membership import MembershipConfig, membership_attack, roc_auc, tpr_at_fpr

SCHEDULE = NoiseSchedule(NoiseScheduleConfig(prediction_type="epsilon"))


class _Memoriser(nn.Module):
    """Predicts the noise exactly for images it holds: x_t minus the nearest remembered image, scaled."""

    def __init__(self, remembered: torch.Tensor) -> None:
        super().__init__()
        self.remembered = nn.Parameter(remembered, requires_grad=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        alpha, sigma = SCHEDULE.alpha_sigma(t, x_t)
        guesses = (x_t[:, None] - alpha[:, None] * self.remembered[None]) / sigma[:, None]
        best = guesses.flatten(2).pow(2).mean(2).argmin(1)
        return guesses[torch.arange(x_t.shape[0]), best]


class _Oblivious(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        return x_t * self.scale


def _cohorts(tmp_path: Path) -> tuple[PreparedDataset, PreparedDataset]:
    a = make_prepared_dataset(tmp_path / "a", shape=(12, 12), subjects=10, items_per_subject=2, seed=0)
    b = make_prepared_dataset(tmp_path / "b", shape=(12, 12), subjects=10, items_per_subject=2, seed=1, subject_prefix="N")
    return PreparedDataset.load(a, "train"), PreparedDataset.load(b, "train")


def _model(unet: nn.Module) -> DiffusionModel:
    return DiffusionModel(unet=unet, schedule=SCHEDULE, codec=None, meta={}, checkpoint=Path("."))


def test_a_memorising_model_is_recognised_and_an_oblivious_one_is_not(tmp_path):
    members, nonmembers = _cohorts(tmp_path)
    remembered = torch.from_numpy(members.stack()[:, None]).float()
    cfg = MembershipConfig(draws=2, bootstrap=200)
    seen = membership_attack(_model(_Memoriser(remembered)), members, nonmembers, cfg).summary
    assert seen["auc_items"]["value"] > 0.95 and seen["auc_subjects"]["value"] > 0.95
    assert seen["tpr_at_0.01_fpr"]["value"] > 0.5
    assert seen["items"] == {"members": 16, "nonmembers": 16} and seen["subjects"] == {"members": 8, "nonmembers": 8}
    blind = membership_attack(_model(_Oblivious()), members, nonmembers, cfg).summary
    assert blind["auc_items"]["ci_low"] < 0.5 < blind["auc_items"]["ci_high"]
    for stat in ("auc_items", "auc_subjects"):
        assert blind[stat]["ci_low"] <= blind[stat]["value"] <= blind[stat]["ci_high"]


def test_auc_and_tpr_at_a_false_positive_rate():
    assert roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert roc_auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    nonmembers = np.arange(100.0)
    assert tpr_at_fpr(np.array([99.5, 98.5, 50.0, 120.0]), nonmembers, 0.01) == 0.5


def test_a_subject_in_both_groups_is_refused(tmp_path):
    members, _ = _cohorts(tmp_path)
    with pytest.raises(Exception, match="both members and non-members"):
        membership_attack(_model(_Oblivious()), members, members)


@pytest.mark.slow
def test_the_command_writes_membership_json_and_checks_the_subjects(tmp_path, capsys):
    from uterosynth.training.diffusion import DiffusionTrainConfig, train_diffusion

    data = make_prepared_dataset(tmp_path / "data", shape=(16, 16), subjects=6, items_per_subject=1)
    other = make_prepared_dataset(tmp_path / "other", shape=(16, 16), subjects=6, items_per_subject=1, seed=2,
                                  subject_prefix="N")
    cfg = load_config(DiffusionTrainConfig, "configs/ddpm2d_cpu.yaml", overrides={"train.steps": 1, "train.val_every": 100})
    train_diffusion(cfg, data, tmp_path / "model", progress=False)
    args = ["audit", "membership", "--model", str(tmp_path / "model"), "--members", str(data)]
    with pytest.raises(SystemExit) as info:
        main([*args, "--nonmembers", f"{other}:train", "--out", str(tmp_path / "mia"), "--set", "draws=1",
              "--set", "bootstrap=100", "--json"])
    assert info.value.code in (0, None)
    doc = json.loads((tmp_path / "mia" / "membership.json").read_text())
    assert doc["items"] == {"members": 4, "nonmembers": 4} and len(doc["scores"]["members"]) == 4
    assert 0.0 <= doc["auc_items"]["value"] <= 1.0 and doc["provenance"]["config"]["draws"] == 1
    with pytest.raises(SystemExit) as info:  # the model's own training subjects as non-members
        main([*args, "--nonmembers", f"{data}:train", "--out", str(tmp_path / "bad")])
    assert info.value.code == 2 and not (tmp_path / "bad").exists()
    assert "trained on" in capsys.readouterr().err
