"""The registry of PDE problems.

Public contract: ``names()`` lists the cases; ``get(name)`` returns a :class:`Problem` with
``parameter_names`` and ``solve(params, x, t) -> ndarray`` of shape ``(len(t), len(x))``.
"""

from __future__ import annotations

import importlib

from physml.pdes.base import Parameter, Problem

# name -> "module:Class"; modules are imported on first use so that a broken solver does not
# take the whole registry down and start-up stays cheap.
_REGISTRY: dict[str, str] = {
    "heat": "physml.pdes.heat:Heat",
    "pme": "physml.pdes.pme:PorousMedium",
    "stefan": "physml.pdes.stefan:Stefan",
    "advection": "physml.pdes.advection:Advection",
    "burgers": "physml.pdes.burgers:InviscidBurgers",
    "heat_neumann": "physml.pdes.heat_neumann:HeatNeumann",
    "stokes2": "physml.pdes.stokes2:StokesSecondProblem",
    "burgers_dirichlet": "physml.pdes.burgers_dirichlet:ViscousBurgersDirichlet",
    "wave": "physml.pdes.wave:Wave",
    "cavity": "physml.pdes.cavity:LidDrivenCavity",
}
_INSTANCES: dict[str, Problem] = {}


def names() -> list[str]:
    """All registered case names, in registry order."""
    return list(_REGISTRY)


def get(name: str) -> Problem:
    """The problem registered under ``name``; ValueError listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown case {name!r}; known cases: {', '.join(_REGISTRY)}")
    if name not in _INSTANCES:
        module_name, class_name = _REGISTRY[name].split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        _INSTANCES[name] = cls()
    return _INSTANCES[name]


__all__ = ["Parameter", "Problem", "get", "names"]
