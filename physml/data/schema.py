"""The manifest table of a dataset split and its pandera schema.

One row per sample (function): ``index``, one column per PDE parameter, ``u_min``/``u_max`` of the
reference solution over every stored value, ``finite`` (every value stored for the sample finite: its
fields and its boundary data or masses), ``mass_residual``
(normalised mass-balance residual of the reference solution, NaN where the problem states no
conservation law) and ``u_shape`` (the per-sample shape of the main field, e.g. ``"10x10"``).

The mass-balance residual is  max_t |∫ u(t, x) dx − M(t)| / ((x_R − x_L) · max(max|u|, 1)),
with M(t) = M(0) + ∫₀ᵗ [F(x_L) − F(x_R)] ds from ``Problem.mass`` (ProbConserv, Hansen et al. 2023, eq. 2)
and ∫ u dx the trapezoid rule on a fine grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import pandera.pandas as pa

from physml.pdes.base import Problem

MASS_TOLERANCE = 2e-3
"""Allowed normalised mass-balance residual of a reference solution (trapezoid error at jumps ≲ h)."""
NONNEGATIVE_SLACK = 1e-9
"""u_min ≥ −NONNEGATIVE_SLACK for problems whose physics keeps u ≥ 0 (round-off of numerical solvers)."""


def shape_str(shape: Sequence[int]) -> str:
    """(10, 10) -> "10x10"."""
    return "x".join(str(int(s)) for s in shape)


def manifest_schema(problem: Problem, u_shape: Sequence[int], split_spec: dict[str, tuple[float, float] | list[float]],
                    n_samples: int | None = None) -> pa.DataFrameSchema:
    """The pandera schema a split's manifest must satisfy.

    ``split_spec`` maps each parameter to its sampling range (lo, hi) or list of values for this split;
    every parameter must also lie inside the problem's physical bounds. ``u_min`` and ``u_max`` are finite
    with u_min ≤ u_max, ``mass_residual`` ≥ 0 (a normalised absolute residual), and with ``n_samples`` the
    table has exactly the rows index = 0, 1, …, n_samples − 1 in order.
    """
    columns: dict[str, pa.Column] = {
        "index": pa.Column(int, [pa.Check(lambda s: s >= 0, name="index >= 0")], unique=True),
    }
    for p in problem.parameters:
        checks = [pa.Check(lambda s, p=p: s.map(p.contains), element_wise=False, name=f"{p.name} in {p.describe_range()}")]
        spec = split_spec[p.name]
        if isinstance(spec, list):
            checks.append(pa.Check(lambda s, v=spec: s.isin(v), name=f"{p.name} in {spec}"))
        else:
            lo, hi = spec
            checks.append(pa.Check(lambda s, lo=lo, hi=hi: (s >= lo) & (s <= hi), name=f"{p.name} in [{lo:g}, {hi:g}]"))
        columns[p.name] = pa.Column(float, checks)
    u_min_checks = [pa.Check(lambda s: s >= -NONNEGATIVE_SLACK, name="u >= 0 (nonnegative physics)")] if problem.nonnegative else []
    finite = pa.Check(lambda s: s.map(math.isfinite), element_wise=False, name="finite")
    columns["u_min"] = pa.Column(float, [finite, *u_min_checks])
    columns["u_max"] = pa.Column(float, [finite])
    columns["finite"] = pa.Column(bool, [pa.Check(lambda s: s, name="all values finite")])
    columns["mass_residual"] = pa.Column(
        float, [pa.Check(lambda s: s.isna() | ((s >= 0) & (s <= MASS_TOLERANCE)),
                         name=f"mass balance residual in [0, {MASS_TOLERANCE:g}]")], nullable=not problem.conservative
    )
    columns["u_shape"] = pa.Column(str, [pa.Check(lambda s, v=shape_str(u_shape): s == v, name=f"u_shape == {shape_str(u_shape)}")])
    table = [pa.Check(lambda df: df["u_min"] <= df["u_max"], name="u_min <= u_max")]
    if n_samples is not None:
        table.append(pa.Check(lambda df, n=n_samples: df["index"].tolist() == list(range(n)),
                              name=f"rows index = 0..{n_samples - 1} in order ({n_samples} samples)"))
    return pa.DataFrameSchema(columns, checks=table, strict=True, coerce=False)


#: What pandera's built-in checks mean for a manifest column.
_BUILT_IN_CHECKS = {"not_nullable": "not_nullable (a NaN where a value is required)"}


def validate_manifest(df: pd.DataFrame, schema: pa.DataFrameSchema, where: str = "") -> pd.DataFrame:
    """Validate ``df`` (all failures at once); ValueError listing the failing checks and rows, prefixed by
    ``where`` (e.g. ``"heat/train (data/quick/heat/train.h5)"``) so that a multi-case run names the dataset."""
    try:
        return schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.copy()
        table = cases["schema_context"] == "DataFrameSchema"  # a check of the whole table, not of one column
        cases["column"] = cases["column"].where(~table, None)
        fails = cases[["column", "check", "index"]].drop_duplicates(["column", "check"]).head(20)
        lines = [f"{'table' if pd.isna(r.column) else f'column {r.column!r}'}: check "
                 f"{_BUILT_IN_CHECKS.get(str(r.check), repr(r.check))} failed"
                 + ("" if pd.isna(r.index) else f" (e.g. row {int(r.index)})") for r in fails.itertuples()]
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}dataset manifest failed validation:\n" + "\n".join(lines)) from None
