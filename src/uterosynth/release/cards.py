"""``DATASHEET.md`` and ``MODEL_CARD.md`` text (after Gebru et al. 2021, *Datasheets for Datasets*,
and Mitchell et al. 2019, *Model Cards for Model Reporting*)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .quality import Quality, failed_bar_warning, quality_md

__all__ = ["audit_line_md", "audit_summary_md", "datasheet_md", "model_card_md", "NO_AUDIT_WARNING"]

NO_AUDIT_WARNING = (
    "> **WARNING: NO MEMORISATION AUDIT.** This release was made with `--no-audit`. No sample was checked\n"
    "> for being a near-copy of a training image. Do NOT share it outside the group that may see the\n"
    "> training data; run `uterosynth audit` and release again before sharing."
)

INTENDED_USE = """- Research and teaching on sagittal T2-weighted female pelvic MRI: method development, data
  augmentation for downstream models, software testing, reader studies on the realism of synthetic images.
- Not for clinical decisions, diagnosis or treatment planning; not a substitute for real patient data
  when validating a clinical tool."""

LIMITATIONS = """- Synthetic images reproduce the training data's distribution, including its biases (scanners, field
  strengths, populations, pathology prevalence); conditions the model saw rarely are rendered less faithfully.
- Images can contain anatomically implausible detail that looks real; condition labels are what the model
  was asked for, not verified findings.
- The memorisation audit flags near-copies under the measures and thresholds stated in the audit section; it lowers but
  does not remove the risk that a sample reveals a training subject (e.g. a copy of a small region, or a
  rare anatomy recognisable without pixel similarity). Thresholds are calibrated on real images that are not
  copies, so about 1 - quantile of genuinely new samples are also dropped (per measure when the audit's control is
  'each')."""


def audit_summary_md(audit: dict[str, Any] | None) -> str:
    """Markdown summary of an ``audit.json`` (no training item names, only numbers)."""
    if audit is None:
        return NO_AUDIT_WARNING
    s, c = audit["summary"], audit["calibration"]
    lines = [
        f"- synthetic samples audited: {s['samples']}; flagged as near-copies: {s['flagged']} "
        f"({100 * s['flagged_fraction']:.2f} %)",
        f"- measures: {', '.join(audit.get('measures', {}))}; modes: {', '.join(audit.get('modes', []))}",
        f"- calibration ({'any measure' if c.get('control', 'each') == 'any' else 'each measure'}): thresholds = "
        f"conformal {c['quantile']} quantile of the nearest-training similarity of "
        f"{c.get('items', c['holdout_items'])} items of {c.get('subjects', c['holdout_subjects'])} subjects, none of them "
        f"a copy ({_sources(c)})",
    ]
    if "training_subjects_copied" in s:
        lines.append(f"- training subjects with at least one flagged near-copy among the samples: "
                     f"{s['training_subjects_copied']} of {s['training_subjects']}")
    if c.get("items", c["holdout_items"]) < 100:
        lines.append(f"- **caution:** only {c.get('items', c['holdout_items'])} items calibrated the thresholds; a high "
                     "quantile of so few values is close to their maximum and unstable")
    ffr = c.get("false_flag_rate", {})
    if ffr.get("available"):
        lines.append(f"- estimated false-flag rate on the calibration items (leave-one-subject-out, any measure): "
                     f"{100 * ffr['any']:.2f} %")
    lines.append("")
    lines.append("| mode | measure | threshold | synthetic flagged |")
    lines.append("| --- | --- | --- | --- |")
    for mode, d in c["thresholds"].items():
        for measure, thr in d.items():
            lines.append(f"| {mode} | {measure} | {thr} | {s['flagged_by'].get(f'{mode}/{measure}', 0)} |")
    prov = audit.get("provenance", {})
    lines.append("")
    lines.append(f"Audit made with uterosynth {prov.get('uterosynth_version', '?')} on {prov.get('created', '?')}.")
    return "\n".join(lines)


def audit_line_md(audit: dict[str, Any] | None, dropped: int) -> str:
    """One line on the memorisation audit for the datasheet's quality section."""
    if audit is None:
        return "- Memorisation audit: **none** (released with `--no-audit`; see the warning above)."
    s = audit["summary"]
    return (f"- Memorisation audit: {s['flagged']} of {s['samples']} samples flagged as near-copies of training "
            f"images; {dropped} dropped from this release (details under \"Privacy audit\").")


def _counts(records: list[dict[str, Any]]) -> str:
    keys = sorted({k for r in records for k in (r.get("condition") or {})})
    if not keys:
        return "- no class conditions recorded (unconditional samples)"
    lines = ["| attribute | value | samples |", "| --- | --- | --- |"]
    for key in keys:
        for value, n in sorted(Counter(str((r.get("condition") or {}).get(key, "")) for r in records).items()):
            lines.append(f"| {key} | {value} | {n} |")
    return "\n".join(lines)


FAST_DECODER_WARNING = ("> **WARNING: DECODED BY A FAST DECODER**, released with `--force`: the images come from a "
                        "small decoder distilled for previews, not from the model's own decoder (see Provenance).")


def decoder_md(decoder: dict[str, Any] | None) -> str:
    """How the set's latents became images: the autoencoder's decoder, or a fast decoder with its PSNR."""
    if not decoder or decoder.get("kind") != "fast":
        return "the model's own (the autoencoder's decoder, or none for a pixel-space model)"
    psnr = decoder.get("psnr_to_full_db")
    return (f"**a fast decoder** (`{decoder.get('sha256') or decoder.get('path')}`; PSNR "
            f"{'?' if psnr is None else f'{psnr:g}'} dB to the autoencoder's decoder), not the model's own")


def datasheet_md(
    *,
    synthetic_info: dict[str, Any],
    records: list[dict[str, Any]],
    released: list[dict[str, Any]],
    dropped: int,
    audit: dict[str, Any] | None,
    licence: str,
    dims: int,
    formats: list[str],
    version: str,
    quality: Quality,
) -> str:
    """The release's ``DATASHEET.md``: a forced release that failed its fidelity bar says so first."""
    first = records[0] if records else {}
    info = synthetic_info
    model_hashes = sorted({str(r.get("model_hash")) for r in records if r.get("model_hash")}) or [str(info.get("model_hash"))]
    fast = (info.get("decoder") or {}).get("kind") == "fast"
    warnings = [w for w in (failed_bar_warning(quality), NO_AUDIT_WARNING if audit is None else "",
                            FAST_DECODER_WARNING if fast else "") if w]
    head = "".join(w + "\n\n" for w in warnings)
    return f"""# Datasheet: synthetic sagittal T2-weighted pelvic MRI

{head}## Summary

- {len(released)} synthetic {'volumes' if dims == 3 else 'slices'} released ({dropped} dropped by the memorisation audit
  out of {len(records)} generated).
- Quality: {quality.status}{'' if quality.evaluation is not None else ' (no `--evaluation`)'}; see "Quality".
- Formats: {', '.join(formats)}. Checksums: `SHA256SUMS` (`sha256sum -c SHA256SUMS`).
- Licence: {licence}

## Provenance

- Generated by uterosynth (synthetic set written by version {info.get('uterosynth_version', '?')}); released with
  uterosynth {version}.
- Model hash(es): {', '.join(f'`{h}`' for h in model_hashes)}
- Sampler: {first.get('sampler', info.get('sampler', '?'))}, steps: {first.get('steps', info.get('steps', '?'))},
  guidance scale: {first.get('guidance', info.get('guidance', '?'))}; base seed: {info.get('seed', '?')}
  (per-sample seeds in `metadata.csv`).
- Decoder: {decoder_md(info.get('decoder'))}
- Every image is synthetic: no pixel comes from a patient. DICOM files are Secondary Capture objects
  (`ImageType DERIVED\\SECONDARY`, `ConversionType SYN`, "SYNTHETIC" in the series description) with
  freshly generated UIDs and no patient identifiers.

## Composition (released samples per class)

{_counts(released)}

## Quality

{quality_md(quality, audit_line_md(audit, dropped))}

## Privacy audit

{audit_summary_md(audit)}

## Intended use

{INTENDED_USE}

## Limitations

{LIMITATIONS}

## Files

- `nifti/` images with their geometry (affine from the synthetic set){'; `_axial` / `_coronal` reformats beside each sagittal volume' if dims == 3 else ''}
- `png/` 8-bit previews{' (middle slice of each orientation)' if dims == 3 else ''}
- `dicom/` (if present) one folder per sample, one series per orientation
- `metadata.csv` one row per sample: seed, condition, prompt, sampler, guidance, similarity to the nearest
  training item per audit measure
"""


def model_card_md(
    *,
    model_json: dict[str, Any],
    files: dict[str, str],
    audit: dict[str, Any] | None,
    licence: str,
    version: str,
) -> str:
    """The release's ``MODEL_CARD.md``."""
    scalars = {k: v for k, v in model_json.items() if isinstance(v, str | int | float | bool)}
    details = "\n".join(f"- {k}: `{v}`" for k, v in sorted(scalars.items())) or "- (model.json has no scalar fields)"
    sections = ", ".join(f"`{k}`" for k, v in model_json.items() if isinstance(v, dict | list))
    hashes = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in sorted(files.items()))
    weights = files.get("model.safetensors")
    audited = (audit or {}).get("inputs", {}).get("synthetic", {}).get("model_hash")
    mismatch = ""
    if audit is not None and weights and audited and len(str(audited)) == 64 and audited != weights:
        mismatch = (f"\n> **Note:** the audit was run on samples of model hash `{audited}`, which is not the "
                    f"sha256 of these weights (`{weights}`).\n")
    head = NO_AUDIT_WARNING + "\n\n" if audit is None else ""
    return f"""# Model card: uterosynth diffusion model

{head}## Model details

- Diffusion model for synthetic sagittal T2-weighted female pelvic MRI, trained with uterosynth; released
  with uterosynth {version}. Rebuild and sample it with `uterosynth sample --model <this folder>`.
- Licence: {licence}
{details}
- Further configuration in `model.json`: {sections or '-'}

| file | sha256 |
| --- | --- |
{hashes}

## Memorisation audit of its samples
{mismatch}
{audit_summary_md(audit)}

## Intended use

{INTENDED_USE}

## Limitations and risks

{LIMITATIONS}
- A released model can be sampled without limit; its samples are not audited unless you run
  `uterosynth audit` on them. Generative models can memorise training images; audit every synthetic set
  before sharing it.
"""


def _sources(calibration: dict[str, Any]) -> str:
    """``"40 held-out, 320 training, against the other subjects"`` (older audits: held-out items only)."""
    sources = calibration.get("sources") or {"held-out": calibration["holdout_items"]}
    return ", ".join(f"{n} {name}" for name, n in sources.items())
