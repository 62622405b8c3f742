"""Every DP-SGD accountant side by side: values, labels, timings and plots.

* :func:`compare`: eps of one run (or a heterogeneous history) by each
  accountant: edgeworth's own methods, GDP-CLT, dp_accounting's RDP and PLD,
  prv_accountant, and Opacus's RDP, GDP and PRV accountants.
* :func:`compare_noise_multipliers`: the sigma each calls enough for a target.
* :func:`sweep`: either of them over a range of one argument, for plots
  (:mod:`edgeworth.comparison.plots`).

Every row says whether its value is an upper bound, a lower bound or an
estimate, which library and version computed it and how long it took.  The
peers are optional (``pip install ".[compare]"`` from the repository root): a missing one gives a
row that says how to install it, and one that fails or runs past the time
limit gives a row with the error.

The tree follows the data: ``backends`` (one adapter per library) ->
``isolation`` (time limits) -> ``runner`` (the rows) -> ``result`` (tables) ->
``plots``.
"""
from .backends import BACKENDS, GROUPS, INSTALL_HINT, PeerSettings
from .plots import plot, plot_calibration_time, plot_epsilon_vs_steps, plot_sigma_vs_target
from .result import ESTIMATE, KINDS, LOWER, UPPER, Comparison, ComparisonRow
from .runner import DEFAULT_TIME_LIMIT, compare, compare_noise_multipliers, sweep

__all__ = [
    "BACKENDS",
    "DEFAULT_TIME_LIMIT",
    "ESTIMATE",
    "GROUPS",
    "INSTALL_HINT",
    "KINDS",
    "LOWER",
    "UPPER",
    "Comparison",
    "ComparisonRow",
    "PeerSettings",
    "compare",
    "compare_noise_multipliers",
    "plot",
    "plot_calibration_time",
    "plot_epsilon_vs_steps",
    "plot_sigma_vs_target",
    "sweep",
]
