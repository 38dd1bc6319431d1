"""The table and the figure of ``ssl_methods.py`` from its ``results.json``.

Means and sample standard deviations (n - 1) over the seeds of each row, over the runs that
finished training (status ok or collapsed); diverged and failed runs are counted, not averaged.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# (column title, where in a run record, scale, decimals, bold the highest)
COLUMNS = [
    ("linear top-1", ("metrics", "linear_top1"), 100, 1, True),
    ("kNN k=20", ("metrics", "knn20_top1"), 100, 1, True),
    ("kNN k=200", ("metrics", "knn200_top1"), 100, 1, True),
    ("online top-1", ("metrics", "online_top1"), 100, 1, True),
    ("eff. rank feat.", ("diagnostics", "features", "effective_rank"), 1, 1, False),
    ("cov. rank feat.", ("diagnostics", "features", "covariance_rank"), 1, 1, False),
    ("eff. rank emb.", ("diagnostics", "embeddings", "effective_rank"), 1, 1, False),
    ("cov. rank emb.", ("diagnostics", "embeddings", "covariance_rank"), 1, 1, False),
    ("MI estimate", ("metrics", "mi_estimate"), 1, 2, False),
    ("train s", ("train_wall_time_s",), 1, 0, False),
]
AVERAGED = ("ok", "collapsed")


def value(run: dict, path: tuple[str, ...]) -> float | None:
    node = run
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return float(node) if math.isfinite(float(node)) else None


def row_names(results: dict) -> list[str]:
    names = list(results["settings"]["rows"])
    if any(r["row"] == "random-init" for r in results["runs"]):
        names.insert(0, "random-init")
    return names


def summary(results: dict) -> dict[str, dict]:
    """Per row: n, statuses, and (mean, std, values) per column over the averaged runs."""
    out = {}
    for name in row_names(results):
        runs = [r for r in results["runs"] if r["row"] == name]
        used = [r for r in runs if r["status"] in AVERAGED]
        statuses: dict[str, int] = {}
        for r in runs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        columns = {}
        for title, path, scale, _, _ in COLUMNS:
            vals = [v * scale for v in (value(r, path) for r in used) if v is not None]
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
            columns[title] = (float(np.mean(vals)) if vals else None, std, vals)
        out[name] = {"n": len(runs), "statuses": statuses, "columns": columns}
    return out


def _cell(mean, std, decimals, bold, means_only) -> str:
    if mean is None:
        return "-"
    # A diverged estimate (unregularized NWJ/TUBA reach -1e11) would print 15 digits.
    spec = ".2e" if abs(mean) >= 1e4 else f".{decimals}f"
    text = f"{mean:{spec}}"
    if std is not None and not means_only:
        text += f" ± {std:{spec}}"
    return f"**{text}**" if bold else text


def markdown_table(results: dict, means_only: bool = False) -> str:
    rows = summary(results)
    columns = [c for c in COLUMNS if not means_only or c[0] != "train s"]
    best = {}
    for title, _, _, decimals, bold_max in columns:
        means = [
            r["columns"][title][0] for r in rows.values() if r["columns"][title][0] is not None
        ]
        if bold_max and means:  # compare at the printed precision, so ties are all bold
            best[title] = round(max(means), decimals)
    head = ["method", *[c[0] for c in columns], "runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [f"`{name}`"]
        for title, _, _, decimals, _ in columns:
            mean, std, _ = row["columns"][title]
            bold = title in best and mean is not None and round(mean, decimals) == best[title]
            cells.append(_cell(mean, std, decimals, bold, means_only))
        cells.append(", ".join(f"{n} {s}" for s, n in row["statuses"].items()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """Linear top-1 against the effective rank, one point per run: backbone features (left),
    projector embeddings (right); hollow markers for collapsed runs, x for diverged ones."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    names = row_names(results)
    colors = _colors(names)
    for ax, part in zip(axes, ("features", "embeddings"), strict=True):
        for name in names:
            for r in (r for r in results["runs"] if r["row"] == name):
                x = value(r, ("diagnostics", part, "effective_rank"))
                y = value(r, ("metrics", "linear_top1"))
                if x is None or y is None:
                    continue
                if r["status"] == "collapsed":  # hollow: collapsed
                    ax.scatter(x, 100 * y, s=36, facecolors="white", edgecolors=[colors[name]])
                else:
                    marker = "x" if r["status"] == "diverged" else "o"
                    ax.scatter(x, 100 * y, marker=marker, c=[colors[name]], s=36)
        ax.set_xlabel(f"effective rank (RankMe) of the validation {part}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("offline linear probe top-1 (%)")
    handles = [axes[0].scatter([], [], c=[colors[n]], label=n) for n in names]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    s = results["settings"]
    fig.suptitle(
        f"{s['data']}, {s['backbone'] or 'backbones from the configs'}, "
        f"{s['epochs'] or 'config'} epochs: one point per run (hollow: collapsed, x: diverged)"
    )
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=100)


def _colors(names: list[str]) -> dict:
    """Black for random init; each ReMINE estimator one tab20 hue, dark without the regularizer
    and light with it; the other methods the remaining hues."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    estimators = list(
        dict.fromkeys(n.split("/")[1].removesuffix("+reg") for n in names if "/" in n)
    )
    colors, other = {}, 0
    for name in names:
        if name == "random-init":
            colors[name] = "black"
        elif "/" in name:
            hue = estimators.index(name.split("/")[1].removesuffix("+reg"))
            colors[name] = tab20((2 * hue + name.endswith("+reg")) % 20)
        else:
            colors[name] = tab20((2 * (len(estimators) + other)) % 20)
            other += 1
    return colors


def write_report(results: dict, out: Path) -> None:
    s = results["settings"]
    header = (
        f"{s['data']}, backbone {s['backbone'] or 'from the configs'}, "
        f"{s['epochs'] or 'config'} epochs, seeds {s['seeds']}; validation top-1 in %, "
        "mean ± sample std over the seeds (ok and collapsed runs); best mean in bold.\n\n"
    )
    (out / "table.md").write_text(header + markdown_table(results))
    plot(results, out / "rank_vs_accuracy.png")
