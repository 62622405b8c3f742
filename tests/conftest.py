"""Shared settings for the test suite."""
import os

from hypothesis import settings

# CI runs many examples; a developer's quick run can lower this with HYPOTHESIS_PROFILE=dev.
settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile("dev", max_examples=25, deadline=None)
# The monotonicity properties (tests/test_properties.py) draw this many
# examples each: 2000 in the CI profile; the dev profile (a quick run, and the
# sanitizer job, where a call is ~10x slower and memory errors are the point)
# keeps its own small number.
MONOTONICITY_EXAMPLES = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else 2000
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
