"""Plots of sweeps (lists of :class:`Comparison`), one line per accountant.

Needs matplotlib (``pip install ".[compare]"`` from the repository root).  Figures are built
with ``matplotlib.figure.Figure``, without pyplot, so they render headless.
The line style says what a value is: solid for an upper bound, dashed for an
estimate, dotted for a lower bound; every legend entry names the kind too.
"""
from __future__ import annotations

from typing import Optional, Sequence

from .backends import INSTALL_HINT
from .result import ESTIMATE, LOWER, UPPER, Comparison, series

_STYLE = {UPPER: "-", ESTIMATE: "--", LOWER: ":"}
_MARKERS = "os^vDP*Xh<>p"


def _colors(n: int):
    """n distinct colours (tab20 holds 20)."""
    from matplotlib import colormaps
    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def _figure():
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"plotting needs matplotlib: `{INSTALL_HINT}` from the repository root") from exc
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    return fig, fig.add_subplot()


def _x(comp: Comparison, over: str) -> float:
    params = comp.parameters()
    if over not in params:
        raise ValueError(f"over: the comparisons have no single {over!r} (they have {sorted(params)})")
    return float(params[over])


def plot(comparisons: Sequence[Comparison], over: str, *, y: str = "value", path: Optional[str] = None,
         title: Optional[str] = None, logx: bool = True, logy: bool = True):
    """One line per accountant: its value (``y="value"``) or wall time (``y="seconds"``) against ``over``.

    Args:
        comparisons: a sweep, e.g. from :func:`edgeworth.comparison.sweep`.
        over: the swept argument ("steps", "eps", "sigma", "delta", "q").
        y: "value" (eps or sigma) or "seconds" (wall time of each call).
        path: where to save the figure (PNG by its extension), if given.
        title: the title (a description of the sweep by default).
        logx, logy: log scales.

    Returns:
        The matplotlib Figure.  Points where an accountant has no value
        (an error, a time-out) are left out of its line.
    """
    if y not in ("value", "seconds"):
        raise ValueError(f"y must be 'value' or 'seconds', got {y!r}")
    if not comparisons:
        raise ValueError("comparisons: nothing to plot")
    fig, ax = _figure()
    quantity = comparisons[0].quantity
    lines = series(comparisons)
    colors = _colors(len(lines))
    for n, (accountant, (kind, idx)) in enumerate(lines.items()):
        points = [(_x(comparisons[i], over), getattr(comparisons[i].row(accountant), y)) for i in idx]
        points = [(a, b) for a, b in points if b is not None and (b > 0 or not logy)]
        if not points:
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, _STYLE.get(kind, "-"), color=colors[n], marker=_MARKERS[n % len(_MARKERS)], markersize=4,
                label=f"{accountant} ({kind})")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel({"eps": "target eps", "steps": "steps", "sigma": "noise multiplier sigma"}.get(over, over))
    what = "eps" if quantity == "epsilon" else "noise multiplier sigma"
    ax.set_ylabel(what if y == "value" else "wall time of one call (s)")
    fixed = ", ".join(f"{k} = {v:g}" for k, v in comparisons[0].parameters().items() if k != over)
    ax.set_title(title or f"{what if y == 'value' else 'time of one call'} against {over}: {fixed}\n"
                 "Poisson sampling, add/remove-one neighbours", fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    if path:
        fig.savefig(path, dpi=110)
    return fig


def plot_epsilon_vs_steps(comparisons: Sequence[Comparison], path: Optional[str] = None, **kwargs):
    """eps against steps for every accountant (a sweep of :func:`compare` over "steps")."""
    return plot(comparisons, "steps", path=path, **kwargs)


def plot_sigma_vs_target(comparisons: Sequence[Comparison], path: Optional[str] = None, **kwargs):
    """sigma against the target eps (a sweep of :func:`compare_noise_multipliers` over "eps")."""
    return plot(comparisons, "eps", path=path, **kwargs)


def plot_calibration_time(comparisons: Sequence[Comparison], path: Optional[str] = None, **kwargs):
    """Calibration time against steps on log scales (a sweep of :func:`compare_noise_multipliers` over "steps")."""
    return plot(comparisons, "steps", y="seconds", path=path, **kwargs)


def legend_labels(fig) -> list:
    """The series names of a figure made here, as its legend shows them."""
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
