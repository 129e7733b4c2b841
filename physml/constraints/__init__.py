"""Linear constraints G u = b and the exact Gaussian conditioning they all share.

``condition`` (gaussian.py) is the single implementation of the update
μ' = μ − Σ Gᵀ (G Σ Gᵀ + σ²I)⁻¹ (G μ − b), Σ' = Σ − Σ Gᵀ (G Σ Gᵀ + σ²I)⁻¹ G Σ;
the builders (conservation.py, boundary.py) only produce (G, b); bound.py finds which points a known lower
bound holds, so that the same update conditions the rest.
"""

from physml.constraints.bound import clamp_to_bound, most_probable_on_bound
from physml.constraints.boundary import dirichlet_constraint, periodic_constraint, stack_constraints, value_constraint
from physml.constraints.conservation import conservation_constraint, trapezoid_weights
from physml.constraints.gaussian import condition, constrained_log_likelihood, hardc, probconserv

__all__ = [
    "clamp_to_bound",
    "condition",
    "conservation_constraint",
    "constrained_log_likelihood",
    "dirichlet_constraint",
    "hardc",
    "most_probable_on_bound",
    "periodic_constraint",
    "probconserv",
    "stack_constraints",
    "trapezoid_weights",
    "value_constraint",
]
