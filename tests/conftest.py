"""Shared settings for the test suite."""
import os

from hypothesis import settings

# CI runs many examples; a developer's quick run can lower this with HYPOTHESIS_PROFILE=dev.  The CI profile is
# derandomized: every run draws the same examples (a seed per test), so a CI result can be reproduced and a commit
# is judged on what it changed.  Exploring new inputs is the job of HYPOTHESIS_PROFILE=explore (random draws, many
# examples) and of the seeded searches in benchmarks/ (monotonicity_search.py), whose open findings are listed in
# docs/robustness.md.
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("explore", max_examples=1000, deadline=None)
# The monotonicity properties (tests/test_properties.py) draw this many
# examples each: 2000 in the CI profile; the dev profile (a quick run, and the
# sanitizer job, where a call is ~10x slower and memory errors are the point)
# keeps its own small number.
MONOTONICITY_EXAMPLES = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else 2000
# The README's monotonicity tolerance ("What the numbers mean"): between
# neighbouring inputs a certified eps or delta may step the wrong way by at
# most MONOTONE_RTOL relative, a certified sigma by MONOTONE_RTOL_SIGMA, where
# at least one step is sampled in all (q * steps >= 1); with fewer, both by
# MONOTONE_RTOL_FEW.  Over the whole range of steps the API accepts (to 2^53).
MONOTONE_RTOL = 1e-4
MONOTONE_RTOL_SIGMA = 3e-5
MONOTONE_RTOL_FEW = 1e-3
# The whole-range monotonicity properties (tests/test_properties.py, every
# input the API accepts) draw this many examples each.
WHOLE_RANGE_EXAMPLES = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else 300
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def package_env(**extra):
    """The environment for a child Python that must import the edgeworth this test process imported.

    CI installs the package into a virtual environment and runs pytest in the clone, whose own ``edgeworth/``
    folder has no built extension: a child started there (``-m``/``-c`` put the working directory first on
    sys.path) would import that folder and fail.  So children run with a working directory outside the source
    tree (the caller passes ``cwd=tmp_path``) and this environment, which puts the imported package's parent
    first on PYTHONPATH."""
    import edgeworth
    parent = os.path.dirname(os.path.dirname(os.path.abspath(edgeworth.__file__)))
    path = os.pathsep.join(p for p in (parent, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
