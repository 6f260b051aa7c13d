"""Membership inference: can the model's own denoising error tell its training subjects from others?

A diffusion model denoises the images it was trained on better than new ones of the same kind
when it has memorised them. The attack (loss-based, in the spirit of SecMI, Duan et al. 2023,
without its iterative inversion) noises every item at a few fixed timesteps with fixed noise,
asks the model for its training target under the item's own condition, and scores the item by
minus its mean log error. Members are the items of the model's training subjects, non-members
items of subjects it never saw (a held-out split, or another cohort). The result:

- the ROC AUC over items and over subjects (a subject's score is the mean of its items'), with
  95 % intervals from a bootstrap over subjects in both groups;
- the true-positive rate at 1 % false positives (items), with its interval.

An AUC near 0.5 means the model's errors carry no trace of who it was trained on; 1.0 means
every training subject can be recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from ..core.config import StrictModel
from ..core.errors import DataError
from ..core.precision import network_dims, resolve_precision
from ..core.stats import percentile_interval
from ..data.manifest import PreparedDataset
from ..models.diffusion import DiffusionModel

__all__ = ["MembershipConfig", "MembershipResult", "denoising_errors", "membership_attack", "roc_auc", "tpr_at_fpr"]


class MembershipConfig(StrictModel):
    """Settings of ``uterosynth audit membership``."""

    timesteps: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3],
                                   description="noise levels, as fractions of the schedule's training timesteps")
    draws: int = Field(4, ge=1, description="noise draws per item and timestep")
    batch_size: int = Field(32, ge=1)
    seed: int = 0
    fpr: float = Field(0.01, gt=0, lt=0.5, description="false-positive rate of the reported true-positive rate")
    bootstrap: int = Field(1000, ge=100, description="bootstrap replicates over subjects")
    max_items: int | None = Field(None, ge=2, description="cap on items per group (random subset)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the denoiser's forward passes: auto is bf16 where the device runs it natively")


@dataclass(frozen=True)
class MembershipResult:
    """Per-item scores (higher: more member-like) and the attack's summary."""

    member_scores: np.ndarray
    nonmember_scores: np.ndarray
    summary: dict[str, Any]


def _clean(model: DiffusionModel, images: torch.Tensor) -> torch.Tensor:
    """What the UNet denoises: the images, or their latent means scaled as in training."""
    if model.autoencoder is None:
        return images
    mu, _ = model.autoencoder.encode(images)
    return mu * model.scale_factor


def _timesteps(model: DiffusionModel, cfg: MembershipConfig) -> list[int]:
    """The configured noise levels as training timesteps of the model's schedule."""
    T = model.schedule.num_train_timesteps
    return [min(T - 1, max(1, round(f * T))) for f in cfg.timesteps]


@torch.inference_mode()
def denoising_errors(model: DiffusionModel, data: PreparedDataset, cfg: MembershipConfig) -> np.ndarray:
    """``(N, len(timesteps))``: each item's mean squared error of the training target, per timestep."""
    device = next(model.unet.parameters()).device
    bf16 = resolve_precision(cfg.precision, device, spatial_dims=network_dims(model.meta)) == "bf16"
    steps = _timesteps(model, cfg)
    out = np.zeros((len(data.rows), len(steps)))
    for start in range(0, len(data.rows), cfg.batch_size):
        rows = data.rows[start : start + cfg.batch_size]
        images = torch.from_numpy(np.stack([data.load_array(r) for r in rows])[:, None]).float().to(device)
        x0 = _clean(model, images)
        cond = model.guided_condition(model.codec.encode(rows, device=device) if model.codec is not None else None)
        for j, t in enumerate(steps):
            errors = []
            for d in range(cfg.draws):
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + j * 1009 + d)
                eps = torch.randn(x0.shape, generator=gen).to(device)
                tt = torch.full((x0.shape[0],), t, device=device, dtype=torch.long)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    pred = model.unet(model.schedule.add_noise(x0, eps, tt), tt, cond)
                target = model.schedule.training_target(x0, eps, tt)
                errors.append((pred.float() - target.float()).pow(2).flatten(1).mean(1))
            out[start : start + len(rows), j] = torch.stack(errors).mean(0).cpu().numpy()
    return out


def roc_auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """P(member score > non-member score) + ½ P(tie): the Mann–Whitney form of the ROC AUC."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(members, nonmembers).statistic / (len(members) * len(nonmembers)))


def tpr_at_fpr(members: np.ndarray, nonmembers: np.ndarray, fpr: float) -> float:
    """Share of members scored above the ``1 − fpr`` quantile of the non-members."""
    threshold = np.quantile(nonmembers, 1.0 - fpr, method="higher")
    return float((members > threshold).mean())


def _by_subject(scores: np.ndarray, subjects: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    names = list(dict.fromkeys(subjects))
    index = {s: i for i, s in enumerate(names)}
    groups: list[list[int]] = [[] for _ in names]
    for k, s in enumerate(subjects):
        groups[index[s]].append(k)
    members = [np.asarray(g) for g in groups]
    return np.array([scores[g].mean() for g in members]), members


def membership_attack(
    model: DiffusionModel, members: PreparedDataset, nonmembers: PreparedDataset, cfg: MembershipConfig | None = None,
) -> MembershipResult:
    """Score members and non-members and summarise the attack (see the module docstring).

    Raises:
        DataError: a group is empty, or a subject is in both groups.
    """
    cfg = cfg or MembershipConfig()
    rng = np.random.default_rng(cfg.seed)
    groups = []
    for name, data in (("members", members), ("non-members", nonmembers)):
        if not data.rows:
            raise DataError(f"membership: the {name} ({data.root}) hold no items")
        if cfg.max_items is not None and len(data.rows) > cfg.max_items:
            keep = sorted(rng.choice(len(data.rows), cfg.max_items, replace=False).tolist())
            data = PreparedDataset(root=data.root, rows=[data.rows[i] for i in keep], info=data.info)
        groups.append(data)
    members, nonmembers = groups
    shared = {r["subject"] for r in members.rows} & {r["subject"] for r in nonmembers.rows}
    if shared:
        raise DataError(f"membership: {len(shared)} subject(s) are both members and non-members, e.g. {sorted(shared)[0]}")
    scores = [-np.log(denoising_errors(model, d, cfg) + 1e-12).mean(1) for d in groups]
    subjects = [[r["subject"] for r in d.rows] for d in groups]
    summary = _summary(scores[0], scores[1], subjects[0], subjects[1], cfg)
    summary.update(members_source=str(members.root), nonmembers_source=str(nonmembers.root),
                   timesteps=_timesteps(model, cfg))
    return MembershipResult(scores[0], scores[1], summary)


def _summary(m: np.ndarray, n: np.ndarray, m_subj: list[str], n_subj: list[str], cfg: MembershipConfig) -> dict[str, Any]:
    m_sub, m_groups = _by_subject(m, m_subj)
    n_sub, n_groups = _by_subject(n, n_subj)
    rng = np.random.default_rng(cfg.seed)
    reps = {"auc_items": [], "auc_subjects": [], "tpr": []}
    for _ in range(cfg.bootstrap):
        mi = rng.integers(0, len(m_groups), len(m_groups))
        ni = rng.integers(0, len(n_groups), len(n_groups))
        mm = np.concatenate([m[m_groups[i]] for i in mi])
        nn = np.concatenate([n[n_groups[i]] for i in ni])
        reps["auc_items"].append(roc_auc(mm, nn))
        reps["auc_subjects"].append(roc_auc(m_sub[mi], n_sub[ni]))
        reps["tpr"].append(tpr_at_fpr(mm, nn, cfg.fpr))

    def stat(value: float, key: str) -> dict[str, float]:
        low, high = percentile_interval(reps[key], 0.95, estimate=value)
        return {"value": value, "ci_low": low, "ci_high": high}

    return {"items": {"members": len(m), "nonmembers": len(n)},
            "subjects": {"members": len(m_groups), "nonmembers": len(n_groups)},
            "auc_items": stat(roc_auc(m, n), "auc_items"), "auc_subjects": stat(roc_auc(m_sub, n_sub), "auc_subjects"),
            f"tpr_at_{cfg.fpr:g}_fpr": stat(tpr_at_fpr(m, n, cfg.fpr), "tpr"), "fpr": cfg.fpr,
            "interval": "95 % percentile bootstrap over subjects of both groups"}


def write_membership(model_path: str, members_ref: str, nonmembers_ref: str, out: str, *,
                     config: MembershipConfig | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run the attack on a model folder and two prepared-dataset references; write ``membership.json``.

    ``members_ref`` defaults its split to ``train`` and ``nonmembers_ref`` to ``test``. The member
    subjects must be among the model's hashed training subjects, and no non-member subject may be.

    Returns:
        The summary (AUCs, TPR at the false-positive rate, counts) and ``out``.
    """
    from ..core.artifacts import atomic_output_dir, provenance, write_json
    from ..data.manifest import parse_dataset_ref
    from ..data.subjects import SALT, hash_subject
    from ..models.diffusion import load_diffusion

    cfg = config or MembershipConfig()
    model = load_diffusion(model_path)
    groups = []
    for ref, default in ((members_ref, "train"), (nonmembers_ref, "test")):
        root, split = parse_dataset_ref(ref)
        groups.append(PreparedDataset.load(root, split or default))
    record = model.meta.get("training_subjects") or {}
    trained, salt = set(record.get("ids", [])), str(record.get("salt", SALT))
    if trained:
        unseen = sorted({r["subject"] for r in groups[0].rows if hash_subject(r["subject"], salt) not in trained})
        seen = sorted({r["subject"] for r in groups[1].rows if hash_subject(r["subject"], salt) in trained})
        if unseen:
            raise DataError(f"{members_ref}: {len(unseen)} member subject(s) were not trained on by {model_path}, "
                            f"e.g. {unseen[0]}; members must be the model's training subjects", keys=("members",))
        if seen:
            raise DataError(f"{nonmembers_ref}: {len(seen)} non-member subject(s) were trained on by {model_path}, "
                            f"e.g. {seen[0]}", keys=("nonmembers",))
    result = membership_attack(model, groups[0], groups[1], cfg)
    doc = {"provenance": provenance(cfg, seed=cfg.seed), "model": {"path": str(model_path), "sha256": model.sha256},
           **result.summary,
           "scores": {"members": [round(float(v), 6) for v in result.member_scores],
                      "nonmembers": [round(float(v), 6) for v in result.nonmember_scores]}}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "membership.json", doc)
    return {k: v for k, v in result.summary.items() if k not in ("members_source", "nonmembers_source")} | {"out": str(out)}
