"""Benchmark centreline velocities of the steady lid-driven cavity at Re = 100.

Source: U. Ghia, K. N. Ghia and C. T. Shin, "High-Re solutions for incompressible flow using the
Navier-Stokes equations and a multigrid method", Journal of Computational Physics 48(3), 387-411
(1982), doi:10.1016/0021-9991(82)90058-4. Table I (u along the vertical line through the geometric
centre, x = 0.5) and Table II (v along the horizontal line through the geometric centre, y = 0.5),
column Re = 100, computed on a uniform 129 x 129 grid. Velocities are in units of the lid speed, lengths
in units of the cavity side; the lid is the top wall y = 1 and moves in +x.
"""

from __future__ import annotations

import numpy as np

GHIA_REYNOLDS: float = 100.0
"""The Reynolds number U L / nu of the tabulated column."""

GHIA_Y: np.ndarray = np.array(
    [0.0000, 0.0547, 0.0625, 0.0703, 0.1016, 0.1719, 0.2813, 0.4531, 0.5000,
     0.6172, 0.7344, 0.8516, 0.9531, 0.9609, 0.9688, 0.9766, 1.0000]
)
"""y positions on the vertical centreline x = 0.5 (Ghia et al. 1982, Table I), shape (17,)."""

GHIA_U: np.ndarray = np.array(
    [0.00000, -0.03717, -0.04192, -0.04775, -0.06434, -0.10150, -0.15662, -0.21090, -0.20581,
     -0.13641, 0.00332, 0.23151, 0.68717, 0.73722, 0.78871, 0.84123, 1.00000]
)
"""u / U at (0.5, GHIA_Y), Re = 100 (Ghia et al. 1982, Table I), shape (17,)."""

GHIA_X: np.ndarray = np.array(
    [0.0000, 0.0625, 0.0703, 0.0781, 0.0938, 0.1563, 0.2266, 0.2344, 0.5000,
     0.8047, 0.8594, 0.9063, 0.9453, 0.9531, 0.9609, 0.9688, 1.0000]
)
"""x positions on the horizontal centreline y = 0.5 (Ghia et al. 1982, Table II), shape (17,)."""

GHIA_V: np.ndarray = np.array(
    [0.00000, 0.09233, 0.10091, 0.10890, 0.12317, 0.16077, 0.17507, 0.17527, 0.05454,
     -0.24533, -0.22445, -0.16914, -0.10313, -0.08864, -0.07391, -0.05906, 0.00000]
)
"""v / U at (GHIA_X, 0.5), Re = 100 (Ghia et al. 1982, Table II), shape (17,)."""

__all__ = ["GHIA_REYNOLDS", "GHIA_U", "GHIA_V", "GHIA_X", "GHIA_Y"]
