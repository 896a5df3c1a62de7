"""Products of activation matrices (aᵀb over thousands of samples) in float64, computed in float32.

Reconstruction's normal equations and compensated probes' covariances are sums over tens of thousands of
sampled positions. A float64 product costs a few times a float32 one on CPUs, but a plain float32 product
of post-ReLU activations rounds away what matters: their entries are mostly mean², and a covariance (or a
least-squares fit) is the small difference from it. So the big product is taken in float32 around each
column's mean, where rounding is relative to the spread, and the mean's part is added back in float64:

    aᵀb = (a − ā)ᵀ(b − b̄) + Σ(a − ā) b̄ᵀ + ā Σ(b − b̄)ᵀ + n ā b̄ᵀ

(exact for any shifts ā, b̄; the middle terms are zero up to rounding and kept so that it stays exact).
"""

from __future__ import annotations

import torch


def cross_moments(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """aᵀb in float64, for `a` (samples × m) and `b` (samples × k)."""
    a, b = a.float(), b.float()
    a_shift, b_shift = a.mean(0), b.mean(0)
    a_centered = a - a_shift
    b_centered = a_centered if b is a else b - b_shift
    product = (a_centered.T @ b_centered).double()
    a_shift, b_shift = a_shift.double(), b_shift.double()
    product += torch.outer(a_centered.sum(0).double(), b_shift)
    product += torch.outer(a_shift, b_centered.sum(0).double())
    return product + a.shape[0] * torch.outer(a_shift, b_shift)
