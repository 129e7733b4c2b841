"""A tiny flow that proves the deployment machinery (server, work pool, worker, pull step) end to end.

It runs in seconds, so tests/test_prefect_deployment.py can drive a real deployment with it; the
same test points at ``flows/pipeline.py:pipeline`` by changing one line. The record it writes says
which flow run wrote it and from which working directory (the pull step's
``set_working_directory``), and checks a physics value: the mass of the heat kernel
``u(x, t) = exp(-x²/(4kt)) / sqrt(4πkt)`` is 1 for every ``t`` (trapezoid rule on [-L, L]).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from prefect import flow, task
from prefect.runtime import flow_run


@task
def heat_kernel_mass(k: float, t: float, n: int = 2001, half_width: float = 20.0) -> float:
    """∫ u dx of the 1-D heat kernel by the trapezoid rule on [-half_width, half_width]; exact value 1."""
    h = 2.0 * half_width / (n - 1)
    values = [math.exp(-((-half_width + i * h) ** 2) / (4.0 * k * t)) / math.sqrt(4.0 * math.pi * k * t) for i in range(n)]
    return h * (sum(values) - 0.5 * (values[0] + values[-1]))


@flow(name="smoke", log_prints=True)
def smoke(profile: str = "quick", root: str = ".") -> str:
    """Write ``reports/smoke/<profile>.json`` under ``root``; returns its path."""
    mass = heat_kernel_mass(k=1.0, t=0.5)
    out = Path(root) / "reports" / "smoke" / f"{profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"profile": profile, "flow_run_id": str(flow_run.id), "cwd": os.getcwd(), "heat_kernel_mass": mass}
    tmp = out.with_suffix(".json.partial")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(out)
    print(f"smoke: wrote {out.resolve()}")
    return str(out)
