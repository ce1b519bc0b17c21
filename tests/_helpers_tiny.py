"""The one tiny model of the test suite, built once per session (diffusion/tiny.py's
``build_tiny_model(seed=0)``, what ``--model tiny`` loads), and a loader that returns it.

conftest.py's ``tiny_model`` fixture is this; helpers that are not fixtures call it directly.
"""

from __future__ import annotations

import functools

from videodirector_cli.diffusion.loading import load_model as _REAL_LOAD_MODEL
from videodirector_cli.diffusion.tiny import build_tiny_model


@functools.lru_cache(maxsize=1)
def tiny_model():
    return build_tiny_model(seed=0)


def fast_model_loader(spec, output=None):
    """Stand-in for diffusion.loading.load_model: the cached tiny model for 'tiny', else the
    real loader (kept from before any monkeypatching)."""
    if spec.model != "tiny":
        return _REAL_LOAD_MODEL(spec, output)
    return tiny_model()
