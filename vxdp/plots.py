"""PNG plots of the demo's path comparison (`vxdp demo --out DIR`), with matplotlib.

Drawn from the summary the demo writes (`summary.json`'s "paths": every run of each
path, and what each path survived), so a plot shows exactly the numbers of the table:

    paths.png      setup latency, map-update round trips per second and forwarding Mpps,
                   one panel each: every run a dot, the median a bar, min..max a line
    survival.png   scenario x path: where the program ended up (offloaded, migrated,
                   driver mode, refused), with the time it took; for a migration the
                   median downtime and frames lost over its runs (and the agent's
                   re-bind)

matplotlib is the `demo` extra (`pip install 'vxdp[demo]'`); the Agg backend draws
without a display.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from vxdp.errors import UsageError

#: Panels of paths.png: (key in a run's JSON, title, unit).
PANELS = (("setup_ms", "setup: DRIVER_OK to program running", "ms"),
          ("updates_per_s", "map updates from the guest", "round trips / s"),
          ("mpps", "forwarding through the offloaded program", "Mpps"))
LABELS = {"controlq": "control queue", "agent": "agents"}
COLOURS = {"controlq": "#4c72b0", "agent": "#dd8452"}
OUTCOME_TEXT = {"driver": "driver mode (fallback)"}
OUTCOME_COLOURS = {"offloaded": "#55a868", "re-offloaded": "#55a868", "migrated": "#55a868",
                   "driver": "#ccb974", "refused": "#c44e52", "lost": "#c44e52"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib: pip install 'vxdp[demo]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_plots(paths: dict[str, Any], out: Path) -> list[Path]:
    """paths.png and survival.png from a summary's "paths" into `out`; the files."""
    plt = _pyplot()
    written = [_runs(plt, paths, out / "paths.png")]
    if paths.get("survival"):
        written.append(_survival(plt, paths, out / "survival.png"))
    return written


def _runs(plt: Any, paths: dict[str, Any], target: Path) -> Path:
    vias = [v for v in LABELS if any(r["via"] == v for r in paths["runs"])]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 4))
    for ax, (key, title, unit) in zip(axes, PANELS):
        for i, via in enumerate(vias):
            values = [float(r[key] or 0.0) for r in paths["runs"] if r["via"] == via]
            ax.bar(i, statistics.median(values), width=0.6, color=COLOURS[via], alpha=0.5)
            ax.vlines(i, min(values), max(values), color="black", linewidth=1)
            ax.plot([i] * len(values), values, "o", color=COLOURS[via], markersize=4)
        ax.set_xticks(range(len(vias)), [LABELS[v] for v in vias])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
    runs = max((sum(r["via"] == v for r in paths["runs"]) for v in vias), default=0)
    fig.suptitle(f"{paths['program']}: the same offload over the control queue and over "
                 f"agents ({runs} runs each, {paths['frames']} frames, {paths['updates']} "
                 f"updates a run; bar: median, line: min..max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def _survival(plt: Any, paths: dict[str, Any], target: Path) -> Path:
    rows = list(dict.fromkeys(s["scenario"] for s in paths["survival"]))
    vias = [v for v in LABELS if any(s["via"] == v for s in paths["survival"])]
    cells = {(s["scenario"], s["via"]): s for s in paths["survival"]}
    fig, ax = plt.subplots(figsize=(10, 0.9 * len(rows) + 1.2))
    for y, scenario in enumerate(rows):
        for x, via in enumerate(vias):
            s = cells.get((scenario, via))
            if s is None:
                continue
            ax.add_patch(plt.Rectangle((x, y), 1, 1, color=OUTCOME_COLOURS.get(
                s["outcome"], "#bbbbbb"), ec="white", lw=2))
            lines = [OUTCOME_TEXT.get(s["outcome"], s["outcome"])]
            if s.get("code"):
                lines.append(s["code"])
            if s["outcome"] == "re-offloaded":
                lines.append("maps kept" if "kept" in s["detail"] else "maps start over")
            if s["seconds"] is not None:
                lines.append(f"{s['seconds'] * 1e3:.0f} ms")
            lines.extend(_moved(s))
            ax.text(x + 0.5, y + 0.5, "\n".join(lines), ha="center", va="center",
                    fontsize=9)
    ax.set_xlim(0, len(vias))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([x + 0.5 for x in range(len(vias))], [LABELS[v] for v in vias])
    ax.set_yticks([y + 0.5 for y in range(len(rows))], rows)
    ax.tick_params(length=0)
    ax.set_title("what each path survives (time: from the host's start to the placement; "
                 "migration: medians over its runs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def _moved(s: dict[str, Any]) -> list[str]:
    """A migration cell's figures (medians over its runs)."""
    if not s.get("downtime_ms"):
        return []
    lines = [f"{s['runs']} move(s): downtime {s['downtime_ms']['median']:.1f} ms, "
             f"{s['frames_lost']['median']:.0f} frames lost"]
    if s.get("rebind_ms"):
        lines.append(f"agent re-bound in {s['rebind_ms']['median']:.1f} ms")
    return lines


__all__ = ["PANELS", "write_plots"]
