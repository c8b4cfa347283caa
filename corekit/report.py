"""The run report: ``report.md`` with final metrics and loss/metric curves (``curves.png``),
and the report with pictures, ``report/index.html`` (``corekit.report_html``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from corekit.baseline import baseline_line  # noqa: E402
from corekit.engine.metrics_log import read_metrics  # noqa: E402
from corekit.errors import UserError  # noqa: E402
from corekit.run_files import read_json  # noqa: E402

if TYPE_CHECKING:
    from corekit.report_html import HtmlReport

CURVE_KEYS = ("loss", "nmi", "acc", "ari")


def plot_curves(records: list[dict], path: Path) -> bool:
    """Loss and NMI/ACC/ARI against epoch, one panel each; False when nothing to plot."""
    keys = [k for k in CURVE_KEYS if any(k in r for r in records)]
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(i + 1, r[key]) for i, r in enumerate(records) if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        ax.set_title(key.upper() if key != "loss" else "loss")
        ax.set_xlabel("epoch (all stages)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _what_ran(run_dir: Path) -> list[str]:
    path = run_dir / "run.json"
    if not path.exists():
        return []
    from corekit.report_html import epochs_text

    info = read_json(path)
    stages = ", ".join(f"{s['name']} ({s['data']}, {epochs_text(run_dir, s)})"
                       for s in info["stages"])
    lines = [f"- recipe: `{info['recipe']}`, preset: `{info['preset']}`, "
             f"seed: {', '.join(map(str, info['seeds']))}", f"- stages: {stages}"]
    if info.get("command"):
        lines.append(f"- command: `{info['command']}`")
    return [*lines, ""]


def _unreadable(exc: UserError, run_dir: Path) -> list[str]:
    """The lines of ``report.md`` for a run file that cannot be read (named in the run)."""
    return [f"Not in this report: {str(exc).replace(f'{run_dir}{os.sep}', '')}.", ""]


def warn(made: HtmlReport) -> None:
    """Print what the report found to warn of (a run that collapsed) on stderr."""
    for line in made.warnings:
        print(f"deepclust: warning: {line}", file=sys.stderr)


def write_markdown(run_dir: Path, html: bool = False) -> Path:
    """Write ``report.md`` (and ``curves.png``) for the run in ``run_dir``: what ran (recipe,
    preset, seed, epochs per stage, command), the final metrics and the curves; ``html``: the
    page with pictures is there too (a line points to it)."""
    final_path = run_dir / "final.json"
    try:
        ran = _what_ran(run_dir)
    except UserError as exc:
        ran = _unreadable(exc, run_dir)
    try:
        final = read_json(final_path) if final_path.exists() else {}
    except UserError as exc:
        final, ran = {}, [*ran, *_unreadable(exc, run_dir)]
    records = read_metrics(run_dir)
    lines = [f"# Run report: {final.get('recipe', run_dir.name)}", "", *ran]
    if final:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                  for k, v in final.items() if not isinstance(v, (list, dict))]
        lines.append("")
        line = baseline_line(final)
        if line:
            lines += [f"{line[0].upper()}{line[1:]}.", ""]
    if plot_curves(records, run_dir / "curves.png"):
        lines += ["![loss and metrics per epoch](curves.png)", ""]
    lines.append(f"{len(records)} epoch record(s) in metrics.jsonl; "
                 "the resolved recipe is in recipe.toml; which image went where is in "
                 "assignments.csv.")
    if html:
        lines += ["", "Sample images per cluster, the confusion matrix, an embedding of the "
                      "features and the curves: [report/index.html](report/index.html)."]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_report(run_dir: Path, plugins: Any | None = None) -> Path:
    """Write ``report.md`` and ``report/index.html`` (``corekit.report_html``) for the run in
    ``run_dir``; returns the path of ``report.md``. Never raises: it runs after every training
    run, so what cannot be made is said in the page, or (when the page itself cannot be
    written) on stderr. ``plugins``: the loaded plugins (default: the installed ones)."""
    from corekit.report_html import write_html_report

    made = False
    try:
        warn(write_html_report(run_dir, plugins))
        made = True
    except Exception as exc:  # noqa: BLE001 - a report must never fail a finished run
        print(f"deepclust: warning: {run_dir / 'report' / 'index.html'} could not be written: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
    try:
        return write_markdown(run_dir, html=made)
    except Exception as exc:  # noqa: BLE001
        print(f"deepclust: warning: {run_dir / 'report.md'} could not be written: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return run_dir / "report.md"


def write_seeds_report(out: Path, final: dict, command: str | None) -> Path:
    """``report.md`` of a ``--seeds N`` run: one row per seed and the mean ± std."""
    keys = [k for k in ("nmi", "acc", "ari") if k in final]
    lines = [f"# {final['recipe']}: {len(final['seeds'])} seeds", ""]
    if command:
        lines += [f"- command: `{command}`", ""]
    lines += ["| seed | " + " | ".join(k.upper() for k in keys) + " | seconds | run |",
              "|---|" + "---|" * (len(keys) + 2)]
    for seed, run in zip(final["seeds"], final["runs"], strict=True):
        cells = " | ".join(f"{run[k]:.4f}" for k in keys)
        lines.append(f"| {seed} | {cells} | {run.get('seconds', 0):.0f} | "
                     f"[seed-{seed}](seed-{seed}/report.md) |")
    spread = " | ".join(f"{final[f'{k}_mean']:.4f} ± {final[f'{k}_std']:.4f}" for k in keys)
    lines += [f"| mean ± std | {spread} | | |", ""]
    line = baseline_line(final)
    if line:
        lines += [f"{line[0].upper()}{line[1:]}.", ""]
    if "picked_seed" in final:
        lines += [f"report/index.html and assignments.csv: seed {final['picked_seed']}, "
                  f"{final['picked_by']}.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
