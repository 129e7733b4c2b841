"""physml: physics-constrained machine learning for PDEs (ProbConserv and BOON)."""

__version__ = "0.1.0"
