"""Small statistics in numpy that a conversion needs on every ephys session, so that it does not
import scipy.stats (~0.6 s of import CPU in every worker process).

:func:`anderson_ksamp_midrank` is the k-sample Anderson-Darling statistic of Scholz and Stephens
(1987), midrank variant (their equation 7, for samples with ties), standardized: the value that
``scipy.stats.anderson_ksamp(samples, midrank=True).statistic`` returns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from npc_frames.errors import ParameterError

logger = logging.getLogger(__name__)

__all__ = ["anderson_ksamp_midrank"]


def anderson_ksamp_midrank(samples: Sequence[npt.ArrayLike]) -> float:
    """Return the standardized k-sample Anderson-Darling statistic (midrank) of `samples`.

    Raises ParameterError with fewer than 2 samples, an empty sample, fewer than 2 distinct
    values, or fewer than 4 observations (the variance term divides by (N-1)(N-2)(N-3)).
    """
    arrays = [np.asarray(s, dtype=np.float64).ravel() for s in samples]
    k = len(arrays)
    n = np.array([a.size for a in arrays], dtype=np.float64)
    z = np.sort(np.concatenate(arrays)) if arrays else np.zeros(0)
    zstar = np.unique(z)
    big_n = z.size
    if k < 2 or np.any(n == 0) or zstar.size < 2 or big_n < 4:
        raise ParameterError(
            f"Anderson-Darling k-sample test of {k} samples, sizes {n.astype(int).tolist()}, "
            f"{zstar.size} distinct values",
            field="samples",
            expected="at least 2 non-empty samples, 2 distinct values and 4 observations",
        )
    left = z.searchsorted(zstar, "left")
    lj = z.searchsorted(zstar, "right") - left if big_n != zstar.size else np.ones(zstar.size)
    bj = left + lj / 2.0
    a2akn = 0.0
    for i, a in enumerate(arrays):  # per sample (a handful)
        s = np.sort(a)
        right = s.searchsorted(zstar, "right")
        mij = right - (right - s.searchsorted(zstar, "left")) / 2.0
        inner = lj / big_n * (big_n * mij - bj * n[i]) ** 2 / (bj * (big_n - bj) - big_n * lj / 4.0)
        a2akn += inner.sum() / n[i]
    a2akn *= (big_n - 1.0) / big_n
    h_sum = (1.0 / n).sum()
    hs_cs = (1.0 / np.arange(big_n - 1, 1, -1)).cumsum()
    h = hs_cs[-1] + 1
    g = (hs_cs / np.arange(2, big_n)).sum()
    a_ = (4 * g - 6) * (k - 1) + (10 - 6 * g) * h_sum
    b_ = (2 * g - 4) * k**2 + 8 * h * k + (2 * g - 14 * h - 4) * h_sum - 8 * h + 4 * g - 6
    c_ = (6 * h + 2 * g - 2) * k**2 + (4 * h - 4 * g + 6) * k + (2 * h - 6) * h_sum + 4 * h
    d_ = (2 * h + 6) * k**2 - 4 * h * k
    sigmasq = (a_ * big_n**3 + b_ * big_n**2 + c_ * big_n + d_) / (
        (big_n - 1.0) * (big_n - 2.0) * (big_n - 3.0)
    )
    return float((a2akn - (k - 1)) / math.sqrt(sigmasq))
