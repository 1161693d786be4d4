"""Summaries of an evaluation: per-editor means, deltas against the baseline, tables and plots.

Everything here works on the per-sample rows the harness writes (plain dicts, one per sample
and editor, with ``sample``, ``editor``, ``status`` and one column per metric), so a
results table can be summarised again without running anything.

Two summaries, in the formats of the source papers:

- **means** (R-SIE Table 2 / 3, InstructEdit Table 1): per editor, the mean of each metric
  over its successful rows, RC and GC first, each on its paper's scale (``METRICS``; the
  Markdown opens with a legend of every metric's scale and definition);
- **deltas** (the CMU report): per editor other than the baseline and per metric, the
  per-sample difference ``editor - baseline`` over the samples where both have a value,
  and its count, mean, median, standard deviation (sample, ``ddof=1``; 0 for one sample),
  minimum, maximum, and how many samples improved / degraded by more than the tolerance.
  "Improved" follows the metric's direction: a higher CLIP score, a lower L1 / L2 / LPIPS.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from tools.types import SCORE_SCALES

Row = dict[str, Any]

SCALES: dict[str, tuple[str, str, int, str]] = {
    **SCORE_SCALES,
    "lpips": ("LPIPS", "0-1", -1, "LPIPS (AlexNet) between input and output (InstructEdit Table 1)"),
    "ref_l1": ("L1 vs ref", "0-1", -1, "mean absolute difference from the reference edit, whole image "
               "(R-SIE Table 3 on MagicBrush)"),
    "ref_l2": ("L2 vs ref", "0-1", -1, "mean squared difference from the reference edit (R-SIE Table 3)"),
}
"""Metric column -> (label, scale, direction, definition)."""

METRICS: dict[str, tuple[str, int]] = {k: (v[0], v[2]) for k, v in SCALES.items()}
"""Metric column -> (label, direction): +1 higher is better, -1 lower is better; R-SIE's order."""

STAGES = ("load", "ground", "segment", "edit", "score", "lpips", "total")
"""Timed stages; the harness writes them as ``t_<stage>`` columns (seconds)."""

DEFAULT_TOLERANCE = 1e-3
PLOT_DELTA_METRICS = ("clip_i", "clip_dir")


# --------------------------------------------------------------------------- numbers


def _value(row: Row, metric: str) -> Optional[float]:
    """The row's metric as a finite float, or None (missing, empty cell, NaN)."""
    value = row.get(metric)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def ok_rows(rows: Iterable[Row]) -> list[Row]:
    """The rows whose edit succeeded."""
    return [r for r in rows if r.get("status", "ok") == "ok"]


def paired_deltas(rows: Iterable[Row], editor: str, baseline: str, metric: str) -> list[tuple[str, float]]:
    """``(sample, editor value - baseline value)`` for every sample where both have ``metric``.

    Sorted by sample id; failed rows are left out.
    """
    by_editor: dict[str, dict[str, float]] = defaultdict(dict)
    for row in ok_rows(rows):
        value = _value(row, metric)
        if value is not None and row.get("editor") in (editor, baseline):
            by_editor[row["editor"]][str(row["sample"])] = value
    ours, base = by_editor.get(editor, {}), by_editor.get(baseline, {})
    return [(s, ours[s] - base[s]) for s in sorted(ours.keys() & base.keys())]


def delta_stats(deltas: Sequence[float], direction: int = +1,
                tolerance: float = DEFAULT_TOLERANCE) -> Optional[dict[str, Any]]:
    """The CMU summary of per-sample deltas; None when there are none.

    ``direction`` +1: a positive delta is an improvement; -1: a negative one is. A sample
    improved when ``direction * delta > tolerance``, degraded when ``< -tolerance``.
    """
    values = [float(d) for d in deltas]
    if not values:
        return None
    improved = sum(1 for d in values if direction * d > tolerance)
    degraded = sum(1 for d in values if direction * d < -tolerance)
    return {
        "samples": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "improved": improved,
        "degraded": degraded,
        "unchanged": len(values) - improved - degraded,
    }


def _mean(values: list[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def mean_table(rows: Iterable[Row], editors: Sequence[str],
               metrics: Sequence[str] = tuple(METRICS)) -> dict[str, dict[str, Any]]:
    """Per editor: ``n`` (successful rows) and the mean of each metric (None: no values)."""
    good = ok_rows(rows)
    table: dict[str, dict[str, Any]] = {}
    for editor in editors:
        mine = [r for r in good if r.get("editor") == editor]
        table[editor] = {"n": len(mine)}
        for metric in metrics:
            table[editor][metric] = _mean([v for r in mine if (v := _value(r, metric)) is not None])
    return table


def _counts(rows: Iterable[Row], editors: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per editor: rows on each path, rows where the chat would have asked which object (no edit:
    ``bench.evaluate``'s status "asked"), and failed rows."""
    out = {e: {"localized": 0, "global": 0, "asked": 0, "errors": 0} for e in editors}
    for row in rows:
        counts = out.get(row.get("editor"))
        if counts is None:
            continue
        if row.get("status") == "asked":
            counts["asked"] += 1
        elif row.get("status", "ok") != "ok":
            counts["errors"] += 1
        elif row.get("path") in ("localized", "global"):
            counts[row["path"]] += 1
    return out


def _grounding(rows: Iterable[Row], editors: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per editor: how often the grounded box hit the ground truth (IoU >= 0.5)."""
    out = {}
    good = ok_rows(rows)
    for editor in editors:
        ious = [v for r in good if r.get("editor") == editor and (v := _value(r, "gt_iou")) is not None]
        hits = sum(1 for v in ious if v >= 0.5)
        out[editor] = {"n": len(ious), "mean_iou": _mean(ious), "hits": hits,
                       "hit_rate": hits / len(ious) if ious else None}
    return out


def summarize(rows: Sequence[Row], editors: Sequence[str], baseline: str, *,
              tolerance: float = DEFAULT_TOLERANCE, metrics: Optional[Sequence[str]] = None,
              notes: Sequence[str] = ()) -> dict[str, Any]:
    """Means, deltas against ``baseline``, paths, errors, grounding and timings, per editor.

    ``editors`` are listed in that order (the baseline is added first when missing);
    ``metrics`` default to every metric with at least one value in ``rows``. ``tolerance`` is on
    the 0-1 scale: x100 for the metrics on 0-100 (CLIP-RC, CLIP-GC).
    """
    editors = list(dict.fromkeys([baseline, *editors]))
    if metrics is None:
        metrics = [m for m in METRICS if any(_value(r, m) is not None for r in ok_rows(rows))]
    deltas: dict[str, dict[str, Any]] = {}
    for editor in editors:
        if editor == baseline:
            continue
        deltas[editor] = {}
        for metric in metrics:
            pairs = paired_deltas(rows, editor, baseline, metric)
            deltas[editor][metric] = delta_stats([d for _, d in pairs], METRICS[metric][1],
                                                 tolerance * _unit(metric))
    stage_means = mean_table(rows, editors, [f"t_{s}" for s in STAGES])
    return {
        "baseline": baseline,
        "editors": editors,
        "tolerance": tolerance,
        "samples": len({str(r["sample"]) for r in rows}),
        "metrics": list(metrics),
        "means": mean_table(rows, editors, metrics),
        "deltas": deltas,
        "paths": _counts(rows, editors),
        "grounding": _grounding(rows, editors),
        "timings": {e: {s: stage_means[e][f"t_{s}"] for s in STAGES} for e in editors},
        "notes": list(notes),
    }


# --------------------------------------------------------------------------- text


def _fmt(value: Any, signed: bool = False, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table whose columns line up in a terminal too."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _label(metric: str) -> str:
    label, direction = METRICS[metric]
    return f"{label} {'↑' if direction > 0 else '↓'}"


def _unit(metric: str) -> float:
    """100 for a metric on the 0-100 scale, else 1."""
    return 100.0 if SCALES[metric][1] == "0-100" else 1.0


def _digits(metric: str) -> int:
    """Decimals for a mean: two on a 0-100 scale (as R-SIE prints 60.27), four on 0-1."""
    return 2 if SCALES[metric][1] == "0-100" else 4


def legend(metrics: Sequence[str]) -> str:
    """A Markdown table of each metric's scale, direction and definition."""
    return _table(["metric", "scale", "better", "definition"],
                  [[SCALES[m][0], SCALES[m][1], "higher" if SCALES[m][2] > 0 else "lower", SCALES[m][3]]
                   for m in metrics])


def markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: the metrics' scales, the mean table (R-SIE Table 2 style), the CMU
    delta tables, paths, grounding, timings, notes."""
    editors, metrics, baseline = summary["editors"], summary["metrics"], summary["baseline"]
    parts = [
        "# localedit evaluation",
        f"{summary['samples']} samples; editors {', '.join(editors)}; baseline {baseline}; "
        f"tolerance {summary['tolerance']:g}. ↑ higher is better, ↓ lower is better. Every editor of a "
        f"sample is scored on the same region: its target box(es) and undilated object mask.",
        "## Metrics and their scales",
        legend(metrics),
        "## Mean per editor",
        _table(["editor", "n", *(f"{_label(m)} ({SCALES[m][1]})" for m in metrics)],
               [[e, _fmt(summary["means"][e]["n"]), *(_fmt(summary["means"][e][m], digits=_digits(m))
                                                     for m in metrics)]
                for e in editors]),
        f"## Per-sample delta against {baseline} (editor − {baseline})",
    ]
    for metric in metrics:
        cells = []
        digits = _digits(metric)
        for editor, stats in summary["deltas"].items():
            s = stats.get(metric)
            if s is None:
                cells.append([editor, "0", *["–"] * 7])
                continue
            cells.append([editor, str(s["samples"]),
                          *(_fmt(s[k], signed=True, digits=digits) for k in ("mean", "median")),
                          _fmt(s["std"], digits=digits),
                          *(_fmt(s[k], signed=True, digits=digits) for k in ("min", "max")),
                          str(s["improved"]), str(s["degraded"])])
        parts += [f"### {_label(metric)} ({SCALES[metric][1]})",
                  _table(["editor", "samples", "mean Δ", "median Δ", "std Δ", "min Δ", "max Δ",
                          "improved", "degraded"], cells) if cells else "(no other editor)"]
    parts += ["## Paths and errors",
              _table(["editor", "localized", "global (nothing found / no subject)",
                      "the chat would ask which one (no edit)", "errors"],
                     [[e, *(str(summary["paths"][e][k]) for k in ("localized", "global", "asked", "errors"))]
                      for e in editors])]
    grounding = summary["grounding"]
    if any(g["n"] for g in grounding.values()):
        parts += ["## Grounding against the ground truth",
                  _table(["editor", "samples with GT", "mean IoU", "hits (IoU ≥ 0.5)", "hit rate"],
                         [[e, str(g["n"]), _fmt(g["mean_iou"]), str(g["hits"]), _fmt(g["hit_rate"], digits=3)]
                          for e, g in grounding.items()])]
    parts += ["## Mean time per stage (seconds)",
              _table(["editor", *STAGES],
                     [[e, *(_fmt(summary["timings"][e][s], digits=3) for s in STAGES)] for e in editors])]
    if summary["notes"]:
        parts += ["## Notes", "\n".join(f"- {n}" for n in summary["notes"])]
    return "\n\n".join(parts) + "\n"


def write_table(rows: Sequence[Row], columns: Sequence[str], csv_path: Path, json_path: Path) -> None:
    """``rows`` as CSV (``columns`` in order, None as an empty cell) and as a JSON list."""
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    json_path.write_text(json.dumps([{c: row.get(c) for c in columns} for row in rows], indent=1),
                         encoding="utf-8")


# --------------------------------------------------------------------------- plots


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_deltas(rows: Sequence[Row], editors: Sequence[str], baseline: str, metric: str,
                path: Path) -> Optional[Path]:
    """The CMU figure: one stem plot per editor of the per-sample delta against the baseline.

    Returns the PNG written, or None (no matplotlib, or no pairs to plot).
    """
    plt = _pyplot()
    others = [e for e in editors if e != baseline]
    series = {e: paired_deltas(rows, e, baseline, metric) for e in others}
    series = {e: pairs for e, pairs in series.items() if pairs}
    if plt is None or not series:
        return None
    width = min(24.0, max(6.0, 0.25 * max(map(len, series.values()))))
    fig, axes = plt.subplots(len(series), 1, figsize=(width, 2.6 * len(series)), squeeze=False)
    for ax, (editor, pairs) in zip(axes[:, 0], series.items()):
        deltas = [d for _, d in pairs]
        ax.stem(range(len(deltas)), deltas, basefmt=" ")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"{editor}: Δ {METRICS[metric][0]} vs {baseline} (mean {statistics.fmean(deltas):+.4f})")
        ax.set_ylabel(f"Δ {METRICS[metric][0]}")
        if len(pairs) <= 30:
            ax.set_xticks(range(len(pairs)), [s for s, _ in pairs], rotation=60, fontsize=7)
    axes[-1, 0].set_xlabel("sample")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_gc_rc(rows: Sequence[Row], editors: Sequence[str], path: Path) -> Optional[Path]:
    """R-SIE's trade-off: CLIP-GC (background kept) against CLIP-RC (region matches), per editor."""
    plt = _pyplot()
    points = {e: [(x, y) for r in ok_rows(rows) if r.get("editor") == e
                  and (x := _value(r, "clip_rc")) is not None and (y := _value(r, "clip_gc")) is not None]
              for e in editors}
    points = {e: p for e, p in points.items() if p}
    if plt is None or not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 5))
    for editor, pts in points.items():
        ax.scatter([x for x, _ in pts], [y for _, y in pts], label=editor, alpha=0.7, s=18)
    ax.set_xlabel("CLIP-RC (P(target category | target box) x100)")
    ax.set_ylabel("CLIP-GC (background, target boxes blanked; x100)")
    ax.set_title("CLIP-GC against CLIP-RC per editor")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(rows: Sequence[Row], editors: Sequence[str], baseline: str,
                folder: Path) -> tuple[list[Path], list[str]]:
    """Every plot into ``folder``; returns the files written and notes on any left out."""
    folder.mkdir(parents=True, exist_ok=True)
    if _pyplot() is None:
        return [], ["plots skipped: matplotlib is not installed (pip install matplotlib)"]
    written, notes = [], []
    for metric in PLOT_DELTA_METRICS:
        out = plot_deltas(rows, editors, baseline, metric, folder / f"delta_{metric}.png")
        if out is None:
            notes.append(f"no delta plot for {METRICS[metric][0]}: no sample has it for both an editor and {baseline}")
        else:
            written.append(out)
    out = plot_gc_rc(rows, editors, folder / "clip_gc_vs_clip_rc.png")
    if out is None:
        notes.append("no CLIP-GC / CLIP-RC scatter: no row has both (they need a region)")
    else:
        written.append(out)
    return written, notes
