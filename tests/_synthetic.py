"""Synthetic ProbConserv functions shared by the model tests (test_anp.py, test_ensemble.py).

u = e^{−kt} sin x is the exact solution of the heat equation u_t = k u_xx, periodic on [0, 2π], with
total mass ∫u dx = 0 for every t.
"""

from __future__ import annotations

import math

import numpy as np
import torch

TWO_PI = 2 * math.pi


def heat_functions(n: int, seed: int, nc: int = 30, nt: int = 4, nx: int = 10) -> list[dict[str, torch.Tensor]]:
    """n functions u = e^{−kt} sin x, k ~ U[1, 5], in the physml.data layout (float32).

    Each has nc random contexts context_t/x/u (nc,), nt stratified target times target_t (nt,) × nx sorted
    positions target_x/u (nt, nx), the mass (nt,) = 0 and its parameter params = (k,).
    """
    rng = np.random.default_rng(seed)
    k = rng.uniform(1, 5, (n, 1))
    ct, cx = rng.uniform(0, 1, (n, nc)), rng.uniform(0, TWO_PI, (n, nc))
    tt = (np.arange(nt) + rng.uniform(0, 1, (n, nt))) / nt
    tx = np.sort(rng.uniform(0, TWO_PI, (n, nt, nx)), axis=-1)

    def u(t: np.ndarray, x: np.ndarray, kk: np.ndarray) -> np.ndarray:
        return np.exp(-kk * t) * np.sin(x)

    def f(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float32)

    return [
        {
            "context_t": f(ct[i]), "context_x": f(cx[i]), "context_u": f(u(ct[i], cx[i], k[i])),
            "target_t": f(tt[i]), "target_x": f(tx[i]), "target_u": f(u(tt[i][:, None], tx[i], k[i])),
            "mass": f(np.zeros(nt)), "params": f(k[i]),
        }
        for i in range(n)
    ]
