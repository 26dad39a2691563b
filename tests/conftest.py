"""Hypothesis settings: random examples locally, a fixed reproducible set in CI."""

import os

from hypothesis import settings

# CI must be reproducible: a green run here means a green run there. Local runs (and
# `pytest -m slow`) keep drawing new examples, which is how property tests find bugs.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

pytest_plugins = ["pytester"]  # tests of symtape's own pytest plugin
