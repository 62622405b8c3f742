"""Shared settings for the test suite."""
import os

from hypothesis import settings

# CI runs many examples; a developer's quick run can lower this with HYPOTHESIS_PROFILE=dev.
settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile("dev", max_examples=25, deadline=None)
# The monotonicity properties (tests/test_properties.py) draw at least this
# many examples each, in every profile.
MONOTONICITY_EXAMPLES = 2000
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
