"""Pictures and the evaluation-report section of the downstream experiment."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path

__all__ = ["write_plot", "write_report_section", "format_diff"]


def write_plot(results: Mapping, path: str | Path) -> None:
    """Balanced accuracy (mean ± std over seeds) vs label budget, one line per protocol.

    Budget-independent protocols (synthetic only) are drawn as a dashed horizontal band.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    budgets = [100 * b for b in results["budgets"]]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = plt.get_cmap("tab10")
    for i, p in enumerate(results["protocols"]):
        colour = colours(i % 10)
        rows = [r for r in results["summary"] if r["protocol"] == p["id"]]
        mean = [r["balanced_accuracy"]["mean"] for r in rows]
        std = [r["balanced_accuracy"]["std"] or 0.0 for r in rows]
        if p["budget_independent"]:
            ax.axhline(mean[0], linestyle="--", linewidth=1.2, color=colour, label=f"{p['id']} (any budget)")
            ax.axhspan(mean[0] - std[0], mean[0] + std[0], color=colour, alpha=0.12)
        else:
            ax.errorbar(budgets, mean, yerr=std, marker="o", capsize=3, linewidth=1.5, color=colour, label=p["id"])
    chance = 1.0 / len(results["classes"])
    ax.axhline(chance, color="grey", linewidth=0.8, linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks(budgets)
    ax.set_xticklabels([f"{b:g}%" for b in budgets])
    ax.set_xlabel("label budget (% of real training subjects)")
    ax.set_ylabel("balanced accuracy (real test data)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Downstream task: {results['task']} ({len(results['seeds'])} seeds, mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_diff(d: Mapping | None, scale: float = 100.0) -> str:
    """``+3.1 [−1.2, +7.4]`` (points) from a paired-difference dict."""
    if not d or d.get("mean") is None:
        return "–"
    text = f"{scale * d['mean']:+.1f}"
    if d.get("ci_low") is not None:
        text += f" [{scale * d['ci_low']:+.1f}, {scale * d['ci_high']:+.1f}]"
    return text


def _correction(results: Mapping) -> str:
    """The multiplicity correction named in the results (``none`` for results without one)."""
    for row in results["summary"]:
        diff = (row.get("diff_vs_real") or {}).get("balanced_accuracy") or {}
        if diff.get("correction"):
            return str(diff["correction"])
    return "no"


def write_report_section(results: Mapping, path: str | Path, *, plot: str | Path) -> None:
    """A self-contained HTML fragment (``<section>``) with the plot (base64 PNG) and the table."""
    png = base64.b64encode(Path(plot).read_bytes()).decode("ascii")
    budgets = results["budgets"]
    head = "".join(f"<th>{100 * b:g}%</th>" for b in budgets)
    body = []
    for p in results["protocols"]:
        cells = []
        for b in budgets:
            row = next(r for r in results["summary"] if r["protocol"] == p["id"] and r["budget"] == b)
            ba = row["balanced_accuracy"]
            cell = f"{100 * ba['mean']:.1f} ± {100 * (ba['std'] or 0):.1f}" if ba["mean"] is not None else "–"
            if row["diff_vs_real"] is not None:
                diff = row["diff_vs_real"]["balanced_accuracy"]
                mark = " *" if diff.get("significant") else ""
                cell += f"<br><small>Δ {html.escape(format_diff(diff))}{mark}</small>"
            cells.append(f"<td>{cell}</td>")
        body.append(f"<tr><th>{html.escape(p['id'])}</th>{''.join(cells)}</tr>")
    level = results["confidence_interval"]["level"]
    syn = ", ".join(f"{html.escape(n)} ({s['role']}, {s['n_items']} images)" for n, s in results["synthetic"].items())
    warnings = "".join(f'<p class="warn"><b>Warning:</b> {html.escape(w)}</p>\n' for w in results.get("warnings", []))
    text = f"""<section class="uterosynth-downstream" id="downstream">
<h2>Downstream utility: {html.escape(results['task'])} classifier</h2>
<p>MONAI ResNet-18 ({results['spatial_dims']}D) trained per protocol on a label budget of real training
subjects and tested on the {html.escape(results.get('evaluated_on', 'real test split'))} only ({results['real']['n_items']['test']} images,
{results['real']['n_subjects']['test']} subjects). Classes: {html.escape(', '.join(results['classes']))}.
Synthetic sets: {syn or 'none'}. Seeds: {', '.join(map(str, results['seeds']))}.</p>
{warnings}<img alt="balanced accuracy vs label budget" style="max-width:100%"
 src="data:image/png;base64,{png}">
<table class="downstream-table">
<thead><tr><th>protocol</th>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<p><small>Balanced accuracy in % (mean ± std over seeds). Δ: paired difference to real only (same seed and
budget) in points with its {100 * level:g}% confidence interval; <b>*</b>: significant after {html.escape(_correction(results))}
correction over all compared protocols and budgets (adjusted p &lt; {1 - level:g}). Budget-independent protocols
(synthetic only) repeat one result in every column.</small></p>
</section>
"""
    Path(path).write_text(text)
