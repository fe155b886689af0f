"""npc_frames._stats against scipy.stats, its reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import anderson_ksamp

from npc_frames._stats import anderson_ksamp_midrank
from npc_frames.errors import ParameterError


def test_anderson_ksamp_midrank_equals_scipy() -> None:
    rng = np.random.default_rng(11)
    cases = [
        [rng.normal(size=50), rng.normal(size=30), rng.normal(0.5, 1, size=20)],
        [rng.poisson(3, 40).astype(float), rng.poisson(3, 25).astype(float)],  # many ties
        [rng.poisson(0.3, 12).astype(float), rng.poisson(2, 9).astype(float)] * 2,
        [np.array([0.0, 1.0]), np.array([1.0, 2.0])],  # N = 4
        [rng.integers(0, 5, 200).astype(float) for _ in range(3)],
    ]
    for samples in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = anderson_ksamp(samples, midrank=True).statistic
        assert anderson_ksamp_midrank(samples) == pytest.approx(ref, rel=1e-12, abs=1e-12)


def test_anderson_ksamp_midrank_rejects_degenerate_samples() -> None:
    with pytest.raises(ParameterError, match="distinct"):
        anderson_ksamp_midrank([np.ones(5), np.ones(4)])
    with pytest.raises(ParameterError, match="of 1 samples"):
        anderson_ksamp_midrank([np.arange(5.0)])
    with pytest.raises(ParameterError):
        anderson_ksamp_midrank([np.arange(5.0), np.zeros(0)])
