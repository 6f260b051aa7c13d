"""The audit artifact: ``audit.json`` (per-sample neighbours, thresholds, calibration) and
``audit.html`` (closest pairs side by side, similarity distributions; self-contained)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import atomic_output_dir, provenance, sha256_file
from ..core.errors import ConfigError, DataError
from ..core.imageio import figure_data_uri, middle_slice
from ..data.audit_file import write_audit_files
from ..data.image_set import ImageSet, load_prepared, load_synthetic
from ..data.manifest import parse_dataset_ref
from ..data.subjects import missing_subjects
from ..data.synthetic import generator_subjects
from ..models.encoder_artifact import load_encoder
from .audit import MEASURES, AuditResult, ModeResult, run_audit
from .config import AuditConfig
from .controls import control_kind, load_controls
from .similarity import zoom_alignment

__all__ = ["audit_document", "audit_html"]

_DESCRIPTIONS = {
    "ncc": "normalised cross-correlation on the working grid, maximised over shifts and mirror images",
    "ssim": "SSIM (uniform window) maximised over mirror images, exact on the NCC/embedding shortlist",
    "embedding": "cosine similarity of encoder embeddings",
    "zoom": "normalised cross-correlation of the sample shrunk to each zoom scale against every window of a training "
            "item, maximised over mirror images (an enlarged crop)",
}


def _num(x: float) -> float | None:
    return None if not math.isfinite(float(x)) else round(float(x), 6)


def _transform(mode: ModeResult, measure: str, t: int, flip_axes: list[int | None]) -> dict | None:
    if measure == "ncc":
        return mode.alignments[int(t)]
    if measure == "ssim":
        return {"flip_axis": flip_axes[int(t)] if int(t) < len(flip_axes) else None}
    if measure == "zoom" and mode.zoom is not None:
        return zoom_alignment(int(t), **mode.zoom)
    return None


_METHODS = {
    "any": "thresholds = one conformal quantile (rank ceil((n+1)q)) of each calibration item's largest rank score over "
           "the modes and measures (the fraction of that measure's calibration values below its nearest-training "
           "similarity, training items of other subjects only): a non-copy is flagged under any measure at most "
           "1 - q of the time",
    "each": "threshold = conformal quantile (rank ceil((n+1)q)) of the calibration items' nearest-training similarity "
            "(training items of other subjects only), per mode and measure",
}


def audit_document(
    result: AuditResult,
    train: ImageSet,
    synthetic: ImageSet,
    holdout: ImageSet,
    *,
    provenance: dict[str, Any],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """The ``audit.json`` body. Training items are named by their prepared ``item_id`` and
    pseudonymous ``subject`` only (never source paths)."""
    samples = []
    for i in range(len(synthetic)):
        measures: dict[str, Any] = {}
        for m in result.modes:
            flips = [None, *sorted({a["flip_axis"] for a in m.alignments if a["flip_axis"] is not None})]
            entry = {}
            for name, res in m.synthetic.items():
                j = int(res.ref_index[i])
                entry[name] = {
                    "similarity": _num(res.similarity[i]),
                    "threshold": _num(m.thresholds[name]),
                    "flagged": bool(res.similarity[i] > m.thresholds[name]),
                    "nearest_item": train.ids[j] if j >= 0 else None,
                    "nearest_subject": train.subjects[j] if j >= 0 else None,
                    "alignment": _transform(m, name, res.transform[i], flips) if j >= 0 else None,
                }
                if m.mode == "slice":
                    entry[name]["slice"] = int(res.query_slice[i])
                    entry[name]["nearest_slice"] = int(res.ref_slice[i])
            measures[m.mode] = entry
        samples.append({"index": _index(synthetic.ids[i]), "flagged": bool(result.flagged[i]),
                        "flags": result.flags_of(i), "measures": measures})
    thresholds = {m.mode: {k: _num(v) for k, v in m.thresholds.items()} for m in result.modes}
    flagged_by = {f"{m.mode}/{k}": int(sum(1 for s in samples if f"{m.mode}/{k}" in s["flags"]))
                  for m in result.modes for k in m.thresholds}
    return {
        "provenance": provenance,
        "inputs": inputs,
        "measures": {k: _DESCRIPTIONS[k] for k in MEASURES if any(k in m.thresholds for m in result.modes)},
        "extractor": result.extractor,
        "modes": [m.mode for m in result.modes],
        "calibration": {
            "method": _METHODS[result.config.control],
            "quantile": result.config.quantile,
            "control": result.config.control,
            "holdout_items": len(holdout),
            "holdout_subjects": len(set(holdout.subjects)),
            "items": result.calibration["items"],
            "subjects": result.calibration["subjects"],
            "sources": result.calibration["sources"],
            "thresholds": thresholds,
            "conformal": {m.mode: m.conformal for m in result.modes},
            "false_flag_rate": result.false_flag_rate,
            "item_sources": result.calibration["item_sources"],
            "similarities": {
                m.mode: {k: [_num(v) for v in r.similarity] for k, r in m.calibration.items()} for m in result.modes
            },
            "notes": {m.mode: m.notes for m in result.modes if m.notes},
        },
        "alignments": {m.mode: m.alignments for m in result.modes},
        "summary": {
            "samples": len(synthetic),
            "flagged": int(result.flagged.sum()),
            "flagged_fraction": round(float(result.flagged.mean()), 6),
            "flagged_by": flagged_by,
            "flagged_indices": [s["index"] for s in samples if s["flagged"]],
            "training_subjects": len(set(train.subjects)),
            "training_subjects_copied": len(result.copied_subjects(train.subjects)),
        },
        "samples": samples,
    }


def _index(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _distributions(mode: ModeResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(mode.thresholds)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        h = mode.calibration[name].similarity
        s = mode.synthetic[name].similarity
        h, s = h[np.isfinite(h)], s[np.isfinite(s)]
        lo, hi = min(h.min(initial=1), s.min(initial=1)), max(h.max(initial=0), s.max(initial=0), mode.thresholds[name])
        bins = np.linspace(lo, hi + 1e-6, 40)
        ax.hist(h, bins=bins, density=True, alpha=0.55, label=f"calibration, not copies (n={h.size})")
        ax.hist(s, bins=bins, density=True, alpha=0.55, label=f"synthetic (n={s.size})")
        ax.axvline(mode.thresholds[name], color="k", ls="--", label="threshold")
        ax.set_title(f"{mode.mode} / {name}")
        ax.set_xlabel("similarity to nearest training item")
        ax.legend(fontsize=7)
    return figure_data_uri(fig, dpi=80, bbox_inches="tight", metadata={"Software": None})


def _show(images, i: int, slice_index: int) -> np.ndarray:
    arr = images[i].numpy()
    if arr.ndim == 3:
        arr = arr[:, :, slice_index] if slice_index >= 0 else middle_slice(arr)
    return arr


def _pair_figure(result: AuditResult, mode: ModeResult, i: int, train: ImageSet, synthetic: ImageSet) -> str:
    import matplotlib.pyplot as plt

    names = list(mode.thresholds)
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(2.4 * (1 + len(names)), 2.6))
    first = mode.synthetic[names[0]]
    axes[0].imshow(_show(synthetic.planes(), i, int(first.query_slice[i])), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"synthetic {synthetic.ids[i]}" + (" FLAGGED" if result.flagged[i] else ""), fontsize=8,
                      color="red" if result.flagged[i] else "black")
    for ax, name in zip(axes[1:], names, strict=True):
        res = mode.synthetic[name]
        j = int(res.ref_index[i])
        if j >= 0:
            ax.imshow(_show(train.planes(), j, int(res.ref_slice[i])), cmap="gray", vmin=0, vmax=1)
        over = res.similarity[i] > mode.thresholds[name]
        ax.set_title(f"{name} {res.similarity[i]:.3f} (thr {mode.thresholds[name]:.3f})\n"
                     f"train {train.ids[j] if j >= 0 else '-'}", fontsize=7, color="red" if over else "black")
    for ax in axes:
        ax.axis("off")
    return figure_data_uri(fig, dpi=80, bbox_inches="tight", metadata={"Software": None})


def audit_html(result: AuditResult, document: dict[str, Any], train: ImageSet, synthetic: ImageSet) -> str:
    """A self-contained HTML page (PNG figures inlined as base64)."""
    summary, calib = document["summary"], document["calibration"]
    mode = result.modes[-1] if len(result.modes) > 1 else result.modes[0]  # slices show best for volumes
    margin = np.max(np.stack([mode.synthetic[k].similarity - mode.thresholds[k] for k in mode.thresholds]), axis=0)
    order = np.argsort(-np.where(result.flagged, margin + 10, margin), kind="stable")[: result.config.report_pairs]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td><td>{calib['false_flag_rate'].get('per_measure', {}).get(k, '')}</td></tr>"
        for k, v in summary["flagged_by"].items()
    )
    thr = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{html.escape(k)}</td><td>{v}</td></tr>"
        for m, d in calib["thresholds"].items() for k, v in d.items()
    )
    dists = "".join(f'<img alt="distributions {m.mode}" src="{_distributions(m)}"><br>'
                    for m in result.modes)
    pairs = "".join(f'<img alt="pair {synthetic.ids[i]}" src="'
                    f'{_pair_figure(result, mode, int(i), train, synthetic)}"><br>' for i in order)
    ffr = calib["false_flag_rate"]
    ffr_text = (f"{100 * ffr['any']:.1f} % of {ffr['items']} calibration items ({ffr['subjects']} subjects) would be flagged "
                f"under any measure (leave-one-subject-out; expected about {100 * ffr['expected_per_measure']:.1f} % "
                f"{'under any measure' if ffr.get('control') == 'any' else 'per measure'})"
                if ffr.get("available") else html.escape(ffr.get("reason", "not available")))
    sources = "".join(f"<tr><td>{html.escape(src)}</td><td>{n}</td><td>{100 * ffr.get('per_source', {}).get(src, 0):.1f} %</td></tr>"
                      for src, n in calib["sources"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>uterosynth memorisation audit</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px}}.flag{{color:#b00}}</style></head><body>
<h1>Memorisation audit</h1>
<p><b class="flag">{summary['flagged']}</b> of {summary['samples']} synthetic samples flagged
({100 * summary['flagged_fraction']:.1f} %), near-copies of <b>{summary['training_subjects_copied']}</b> of
{summary['training_subjects']} training subjects. A sample is flagged when it is closer to a training item than the
threshold of one of its measures; the thresholds are set so that a calibration item — none of them a copy — exceeds
{'one of them at most' if calib.get('control') == 'any' else 'each of them at most'} {100 * (1 - calib['quantile']):.3g} % of the time
(conformal {calib['quantile']} quantile).</p>
<h2>Calibration</h2>
<p>{calib['items']} items from {calib['subjects']} subjects, none of them a copy, each matched only against training
subjects other than its own. Estimated false-flag rate: {ffr_text}.</p>
<table><tr><th>calibration items</th><th>n</th><th>false-flag rate (LOSO, any measure)</th></tr>{sources}</table>
<table><tr><th>mode</th><th>measure</th><th>threshold</th></tr>{thr}</table>
<h2>Flags per measure</h2>
<table><tr><th>mode/measure</th><th>synthetic flagged</th><th>calibration false-flag rate (LOSO)</th></tr>{rows}</table>
<h2>Similarity to the nearest training item</h2>
<p>Calibration items (blue) set the thresholds (dashed); synthetic samples (orange) to the right of a threshold are flagged.</p>
{dists}
<h2>Closest pairs ({mode.mode} mode)</h2>
<p>Flagged samples first, then the samples nearest to a threshold; each with its nearest training item per measure.</p>
{pairs}
</body></html>
"""


def generator_coverage(info: dict[str, Any], train: ImageSet, train_ref: str, synthetic_dir: str, *,
                       allow: bool) -> dict[str, Any] | None:
    """How many of the generator's training subjects the audited training split holds.

    Raises:
        DataError: some are missing (the audit could not find their copies), unless ``allow``.
    """
    record = generator_subjects(info)
    missing = missing_subjects(record, train.subjects)
    if missing is None:
        return None
    total = len(set(record.get("ids", [])))
    if missing and not allow:
        parts = "; ".join(f"{p.get('of')} trained on {p.get('dataset')}" for p in record.get("parts", []))
        raise DataError(f"train {train_ref}: the generator of {synthetic_dir} was trained on {missing} of its {total} "
                        f"subjects{f' ({parts})' if parts else ''} that this training split does not hold, so their "
                        "copies could not be found; audit against the data the generator was trained on (or the same "
                        "cohort prepared with every slice), or set allow_missing_subjects to audit against other "
                        "patients", keys=("train", "allow_missing_subjects"))
    return {"recorded": total, "held": total - missing}


def write_audit(
    train_ref: str,
    synthetic_dir: str,
    out: str,
    *,
    config: Any = None,
    encoder: str | None = None,
    controls: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the audit on folders and write ``audit.json`` + ``audit.html`` into ``out``.

    Args:
        train_ref: prepared dataset ``DIR`` or ``DIR:train`` (the training split is used).
        synthetic_dir: synthetic set folder.
        out: output folder (written atomically).
        config: :class:`~uterosynth.privacy.config.AuditConfig` (``holdout`` names the split).
        encoder: TorchScript feature extractor file, or ``None`` to skip the embedding measure.
        controls: synthetic set folder of model-made controls (:mod:`uterosynth.privacy.controls`).

    Returns:
        The ``summary`` block of ``audit.json`` plus the thresholds.
    """
    cfg = config or AuditConfig()
    root, split = parse_dataset_ref(train_ref)
    split = split or "train"
    if split == cfg.holdout:
        raise ConfigError(f"train {train_ref}: the training split and holdout are both '{split}'; choose different "
                          "splits", keys=("train", "holdout"))
    extractor = None
    if encoder is not None:

        extractor = load_encoder(encoder, require_info=False)
    synthetic = load_synthetic(synthetic_dir, clip=False, needs="the audit")
    train = load_prepared(root, split, name="train", clip=False, needs="the audit")
    holdout = load_prepared(root, cfg.holdout, name="holdout", clip=False, needs="the audit")
    syn_root = Path(synthetic_dir)
    syn_info_path = syn_root / "synthetic.json"
    syn_info = json.loads(syn_info_path.read_text()) if syn_info_path.is_file() else {}
    coverage = generator_coverage(syn_info, train, train_ref, synthetic_dir, allow=cfg.allow_missing_subjects)
    control_set = None if controls is None else load_controls(controls, train)
    result = run_audit(train, synthetic, holdout, config=cfg, extractor=extractor, controls=control_set)
    inputs = {
        "train": {"dataset": str(root), "split": split, "items": len(train), "subjects": len(set(train.subjects)),
                  "generator_subjects": coverage},
        "holdout": {"dataset": str(root), "split": cfg.holdout, "items": len(holdout), "subjects": len(set(holdout.subjects))},
        "synthetic": {"path": str(syn_root), "items": len(synthetic), "model_hash": syn_info.get("model_hash"),
                      "metadata_sha256": sha256_file(syn_root / "metadata.jsonl")},
        "encoder": None if extractor is None else {"path": str(encoder), "sha256": extractor.sha256},
        "controls": None if control_set is None else {
            "path": str(controls), "items": len(control_set), "kind": control_kind(control_set.info or {}),
            "calibration": cfg.control_calibration,
            "metadata_sha256": sha256_file(Path(controls) / "metadata.jsonl")},
    }
    doc = audit_document(result, train, synthetic, holdout, provenance=provenance(cfg), inputs=inputs)
    page = audit_html(result, doc, train, synthetic)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_audit_files(tmp, doc, page)
    return {**doc["summary"], "thresholds": doc["calibration"]["thresholds"],
            "false_flag_rate_any": doc["calibration"]["false_flag_rate"].get("any"), "out": str(out)}
