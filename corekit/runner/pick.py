"""Which seed of a ``--seeds N`` run the top-level report shows, picked without labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from corekit.engine.metrics_log import read_metrics

CRITERION = "the lowest final training loss (no labels read)"


@attrs.frozen
class Picked:
    """The seed picked, how, and its final loss (None when no epoch trained)."""

    seed: int
    how: str
    loss: float | None


def final_loss(run_dir: Path) -> float | None:
    """The mean training loss of the last epoch of the run in ``run_dir``."""
    losses = [r["loss"] for r in read_metrics(run_dir) if isinstance(r.get("loss"), float)]
    return losses[-1] if losses else None


def pick_seed(out: Path, seeds: list[int]) -> Picked:
    """The seed of ``out/seed-<s>`` with the lowest final training loss: a label-free choice,
    comparable across seeds of one recipe; the first seed where no epoch trained."""
    losses = {seed: final_loss(out / f"seed-{seed}") for seed in seeds}
    known = {seed: loss for seed, loss in losses.items() if loss is not None}
    if not known:
        return Picked(seeds[0], "the first seed (no epoch trained, so no loss to compare)",
                      None)
    seed = min(known, key=known.__getitem__)
    return Picked(seed, f"picked by {CRITERION}: {known[seed]:.4f}", known[seed])


def write_picked_report(out: Path, picked: Picked, plugins: Any) -> None:
    """``out/report/index.html``: the report of the picked seed, saying which and why."""
    from corekit.report_html import write_html_report

    note = (f"The report of seed {picked.seed} of this --seeds run, {picked.how}. The mean "
            "± std over the seeds is in report.md and final.json beside this folder.")
    write_html_report(out / f"seed-{picked.seed}", plugins, out=out / "report", note=note)
