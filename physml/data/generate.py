"""Dataset generation: one HDF5 file and one validated manifest per (case, split).

Layout ``<out>/<profile>/<case>/``: ``{train,val,test}.h5``, ``{split}.manifest.csv`` and, written last,
``dataset.json`` (the completion marker with the input fingerprint and file hashes).

ProbConserv family (Hansen et al. 2023, §4 and the reference code's samplers), per function:
``n_context`` context points (t, x) uniform on the domain; targets on ``n_target_t`` stratified times
(one uniform draw in each of n equal intervals of the time domain) × ``n_target_x`` sorted uniform
positions (shared by the time slices, as in the reference's meshgrid). With ``test_grid`` the test
split's targets are instead the regular grid x_j = x_L + (x_R − x_L)·j/(nx − 1), t_k = t₀ + (t₁ − t₀)·k/nt
(the reference evaluates on such a 201 × 201 grid): the quadrature of the conservation constraint is
then accurate, where 10 random positions miss a large share of a front's mass. Arrays (N functions, P params):

    params (N, P); context_t, context_x, context_u (N, n_context);
    target_t (N, nt); target_x, target_u (N, nt, nx); mass (N, nt) = Problem.mass(params, target_t).

Operator family (BOON, Saad et al. 2023): a regular grid including the boundary points:

    x (nx,); t (nt,) output times; params (N, P); u0 (N, *S); u (N, nt, *S); boundary (N, nt, ...) if
    the problem prescribes boundary data; S = the problem's per-time field shape (``(nx,)`` in 1-D).

Seeds: every (seed, case, split) has its own ``np.random.SeedSequence`` (:func:`split_seed_sequence`), so
the same seed gives byte-identical arrays and adding a case changes no other case's data.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from physml import pdes
from physml.atomic import atomic_path, write_json
from physml.config import SPLITS, ParamsModel
from physml.data.schema import manifest_schema, shape_str, validate_manifest
from physml.pdes.base import Problem

SCHEMA_VERSION = 1
MARKER = "dataset.json"
SHARED_SOLVER_MODULES = ("_exact1d.py", "numerics.py")
"""physml/pdes modules every case's data may depend on beyond its class hierarchy (hashed into the fingerprint)."""
MASS_GRID = 4097
"""Points of the fine uniform grid on which the mass balance of a 1-D reference solution is checked."""


def split_seed_sequence(seed: int, case: str, split: str) -> np.random.SeedSequence:
    """SeedSequence of (seed, sha256(case/split)) — deterministic across runs, platforms and case order."""
    digest = hashlib.sha256(f"{case}/{split}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.SeedSequence([int(seed), *words])


def draw_parameters(problem: Problem, spec: Mapping[str, tuple[float, float] | list[float]], n: int, rng: np.random.Generator) -> np.ndarray:
    """Parameter draws, shape (n, P) in ``problem.parameter_names`` order.

    A range (lo, hi) is sampled uniformly; a list of values fills equal consecutive blocks
    (np.array_split of the n samples), e.g. Stefan's test set: half p* = 0.5, half p* = 0.6.
    """
    cols = []
    for name in problem.parameter_names:
        s = spec[name]
        if isinstance(s, list):
            blocks = np.array_split(np.arange(n), len(s))
            col = np.empty(n)
            for value, idx in zip(s, blocks, strict=True):
                col[idx] = value
        elif s[0] == s[1]:
            col = np.full(n, float(s[0]))
        else:
            col = rng.uniform(s[0], s[1], size=n)
        cols.append(col)
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0))


def _pointwise(problem: Problem, p: Mapping[str, float], t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """u at the scattered points (t_i, x_i) from one ``solve`` on the sorted unique grid; shape of t."""
    tu, ti = np.unique(t, return_inverse=True)
    xu, xi = np.unique(x, return_inverse=True)
    grid = problem.solve(p, xu, tu)
    return grid[ti.reshape(t.shape), xi.reshape(x.shape)]


def _mass_residual(problem: Problem, p: Mapping[str, float], u_grid: np.ndarray, x: np.ndarray, times: np.ndarray) -> float:
    """max_t |∫u dx − M(t)| / ((x_R − x_L) max(max|u|, 1)), trapezoid on ``x``; NaN without a mass law."""
    if not problem.conservative:
        return float("nan")
    try:
        m = problem.mass(p, times)
    except NotImplementedError:
        return float("nan")
    integral = np.trapezoid(u_grid, x, axis=-1)
    scale = (problem.x_domain[1] - problem.x_domain[0]) * max(float(np.max(np.abs(u_grid))), 1.0)
    return float(np.max(np.abs(integral - m)) / scale)


class _Writer:
    """Fills pre-allocated HDF5 datasets sample by sample (memory stays O(one sample))."""

    def __init__(self, fh: h5py.File, n: int) -> None:
        self.fh, self.n = fh, n

    def create(self, name: str, sample_shape: tuple[int, ...]) -> None:
        chunks = (1, *sample_shape) if self.n > 0 and all(s > 0 for s in sample_shape) else None
        self.fh.create_dataset(name, shape=(self.n, *sample_shape), dtype="f8", chunks=chunks, track_times=False)

    def put(self, i: int, values: Mapping[str, np.ndarray]) -> None:
        for k, v in values.items():
            self.fh[k][i] = v


def target_shape(sampling: Any, grid: Any | None) -> tuple[int, int]:
    """(nt, nx) of one function's targets: the regular ``grid`` if given, else the random sampling."""
    if grid is None:
        return sampling.n_target_t, sampling.n_target_x
    return int(grid.nt if grid.times is None else len(grid.times)), int(grid.nx)


def _probconserv_sample(problem: Problem, p: Mapping[str, float], sampling: Any, rng: np.random.Generator,
                        grid: Any | None = None) -> dict[str, np.ndarray]:
    """One function: contexts drawn from ``rng``; targets sampled, or the regular ``grid`` (a config Grid)."""
    t0, t1 = problem.t_domain
    xl, xr = problem.x_domain
    nc = sampling.n_context
    nt, nx = target_shape(sampling, grid)
    ctx_t = rng.uniform(t0, t1, nc)
    ctx_x = rng.uniform(xl, xr, nc)
    if grid is None:
        tgt_t = t0 + (t1 - t0) * (np.arange(nt) + rng.uniform(size=nt)) / nt
        tgt_x1 = np.sort(rng.uniform(xl, xr, nx))
    else:
        tgt_t = grid.resolve_times(problem.t_domain)
        tgt_x1 = np.linspace(xl, xr, nx)
    tgt_x = np.broadcast_to(tgt_x1, (nt, nx))
    tgt_tt = np.broadcast_to(tgt_t[:, None], (nt, nx))
    u = _pointwise(problem, p, np.concatenate([ctx_t, tgt_tt.ravel()]), np.concatenate([ctx_x, tgt_x.ravel()]))
    try:
        mass = problem.mass(p, tgt_t) if problem.conservative else np.full(nt, np.nan)
    except NotImplementedError:
        mass = np.full(nt, np.nan)
    return {
        "context_t": ctx_t,
        "context_x": ctx_x,
        "context_u": u[:nc],
        "target_t": tgt_t,
        "target_x": np.array(tgt_x),
        "target_u": u[nc:].reshape(nt, nx),
        "mass": np.asarray(mass, dtype=np.float64),
    }


def _probconserv_check(problem: Problem, p: Mapping[str, float], sample: Mapping[str, np.ndarray]) -> float:
    x = np.linspace(*problem.x_domain, MASS_GRID)
    return _mass_residual(problem, p, problem.solve(p, x, sample["target_t"]), x, sample["target_t"])


def _source_digest(problem: Problem) -> str:
    """sha256 of what the data depend on: the modules of the problem's class and its bases (its own,
    ``_exact1d.py``, ``base.py``), the shared solver modules of physml/pdes, the data code and the config
    model (``physml/config.py``: it resolves the output times and each split's parameter draws)."""
    h = hashlib.sha256()
    pdes_dir = Path(inspect.getfile(Problem)).parent
    classes = [c for c in type(problem).__mro__ if c.__module__.startswith("physml.")]
    files = list(dict.fromkeys(
        [inspect.getfile(c) for c in classes]
        + [str(pdes_dir / name) for name in SHARED_SOLVER_MODULES]
        + [str(f) for f in sorted(Path(__file__).parent.glob("*.py"))]
        + [inspect.getfile(ParamsModel)]))
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def fingerprint(case: str, params: ParamsModel) -> str:
    """Hash of everything a case's data depend on: its config, profile, seed, schema and source code."""
    problem = pdes.get(case)
    payload = {
        "case": case,
        "config": params.case(case).model_dump(mode="json"),
        "profile": params.profile,
        "seed": params.seed,
        "schema_version": SCHEMA_VERSION,
        "sources": _source_digest(problem),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def generate_split(
    case: str, split: str, params: ParamsModel, case_dir: Path, progress: bool = True
) -> tuple[Path, Path]:
    """Write ``<split>.h5`` then its validated ``<split>.manifest.csv``; return both paths.

    The manifest lands last (atomically), so a split without a manifest is incomplete; on any error the
    split's files are removed.
    """
    problem = pdes.get(case)
    cfg = params.case(case)
    n = params.sizes(case).of(split)
    spec = {name: cfg.parameters[name].split_spec(split) for name in problem.parameter_names}
    ss = split_seed_sequence(params.seed, case, split)
    rng_params, rng_points = (np.random.default_rng(s) for s in ss.spawn(2))
    theta = draw_parameters(problem, spec, n, rng_params)
    h5_path = case_dir / f"{split}.h5"
    manifest_path = case_dir / f"{split}.manifest.csv"
    for stale in (manifest_path, h5_path):
        stale.unlink(missing_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        with atomic_path(h5_path) as tmp, h5py.File(tmp, "w", libver="earliest") as fh:
            fh.attrs.update(
                {
                    "case": case,
                    "family": problem.family,
                    "split": split,
                    "parameter_names": list(problem.parameter_names),
                    "seed": params.seed,
                    "profile": params.profile,
                    "schema_version": SCHEMA_VERSION,
                    "x_domain": list(problem.x_domain),
                    "t_domain": list(problem.t_domain),
                    "spatial_dims": problem.spatial_dims,
                    "n_samples": n,
                }
            )
            fh.create_dataset("params", data=theta, track_times=False)
            w = _Writer(fh, n)
            if problem.family == "probconserv":
                s = cfg.sampling
                assert s is not None
                target_grid = params.test_grid(case) if split == "test" else None
                fh.attrs["sampling"] = json.dumps(s.model_dump())
                fh.attrs["target_grid"] = json.dumps(None if target_grid is None else target_grid.model_dump())
                nt, nx = target_shape(s, target_grid)
                for name, shape in (
                    ("context_t", (s.n_context,)), ("context_x", (s.n_context,)), ("context_u", (s.n_context,)),
                    ("target_t", (nt,)), ("target_x", (nt, nx)), ("target_u", (nt, nx)), ("mass", (nt,)),
                ):
                    w.create(name, shape)
                u_shape: tuple[int, ...] = (nt, nx)
            else:
                grid = params.grid(case)
                x = np.linspace(*problem.x_domain, grid.nx)
                times = grid.resolve_times(problem.t_domain)
                fh.create_dataset("x", data=x, track_times=False)
                fh.create_dataset("t", data=times, track_times=False)
                fh.attrs["grid"] = json.dumps(grid.model_dump())
                u_shape = ()
            bar = tqdm(total=n, desc=f"{case}/{split}", unit="fn", disable=not progress, leave=False)
            for i in range(n):
                p = dict(zip(problem.parameter_names, (float(v) for v in theta[i]), strict=True))
                if problem.family == "probconserv":
                    sample = _probconserv_sample(problem, p, cfg.sampling, rng_points, target_grid)
                    residual = _probconserv_check(problem, p, sample)
                    values = np.concatenate([sample["context_u"], sample["target_u"].ravel()])
                else:
                    sample, residual = _operator_sample(problem, p, x, times)
                    if i == 0:
                        u_shape = sample["u"].shape
                        w.create("u0", sample["u0"].shape)
                        w.create("u", sample["u"].shape)
                        if "boundary" in sample:
                            w.create("boundary", sample["boundary"].shape)
                    values = np.concatenate([sample["u0"].ravel(), sample["u"].ravel()])
                w.put(i, sample)
                rows.append(
                    {
                        "index": i,
                        **p,
                        "u_min": float(np.min(values)),
                        "u_max": float(np.max(values)),
                        # every array stored for the sample: the fields and the boundary data or masses
                        "finite": all(bool(np.all(np.isfinite(v))) for v in sample.values()),
                        "mass_residual": residual,
                        "u_shape": shape_str(sample["target_u" if problem.family == "probconserv" else "u"].shape),
                    }
                )
                bar.update()
            bar.close()
        manifest = pd.DataFrame(rows, columns=["index", *problem.parameter_names, "u_min", "u_max", "finite", "mass_residual", "u_shape"])
        manifest = manifest.astype({"index": int, "finite": bool, "mass_residual": float, "u_shape": str, "u_min": float, "u_max": float, **{k: float for k in problem.parameter_names}})
        validate_manifest(manifest, manifest_schema(problem, u_shape, spec, n_samples=len(rows)), where=f"{case}/{split} ({h5_path})")
        with atomic_path(manifest_path) as tmp:
            manifest.to_csv(tmp, index=False, float_format="%.17g")
    except BaseException:
        h5_path.unlink(missing_ok=True)
        manifest_path.unlink(missing_ok=True)
        raise
    return h5_path, manifest_path


def _operator_sample(problem: Problem, p: Mapping[str, float], x: np.ndarray, times: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    full = problem.solve(p, x, np.concatenate([[problem.t_domain[0]], times]))
    sample = {"u0": full[0], "u": full[1:]}
    try:
        sample["boundary"] = np.asarray(problem.boundary_data(p, times), dtype=np.float64)
    except NotImplementedError:
        pass
    residual = float("nan")
    if problem.spatial_dims == 1 and problem.conservative:
        fine = np.linspace(*problem.x_domain, MASS_GRID)
        residual = _mass_residual(problem, p, problem.solve(p, fine, times), fine, times)
    return sample, residual


def missing_files(case_dir: Path, info: Mapping[str, Any]) -> list[str]:
    """The files that the completion marker's content ``info`` lists and ``case_dir`` lacks, sorted."""
    return sorted(name for name in info.get("files", {}) if not (case_dir / name).is_file())


def changed_files(case_dir: Path, info: Mapping[str, Any]) -> list[str]:
    """The files that the completion marker's content ``info`` lists (all present) whose sha256 differs from
    its record (edited, truncated or swapped in from another dataset), sorted. Each file is hashed once per
    process for each set of sizes and modification times: the stages of one command check the same data
    more than once."""
    files = info.get("files", {})
    stats = tuple((name, st.st_size, st.st_mtime_ns) for name in sorted(files) for st in [(case_dir / name).stat()])
    return list(_changed_files(str(case_dir), json.dumps(files, sort_keys=True), stats))


@functools.lru_cache(maxsize=64)
def _changed_files(case_dir: str, files_json: str, stats: tuple[tuple[str, int, int], ...]) -> tuple[str, ...]:
    return tuple(sorted(name for name, digest in json.loads(files_json).items()
                        if _sha256(Path(case_dir) / name) != digest))


def is_complete(case_dir: Path, fp: str | None = None) -> bool:
    """True when ``dataset.json`` exists (and, with ``fp``, records that fingerprint) and every split file
    does, with the sha256 it recorded (so generation repairs an edited file instead of keeping it). A marker
    that is not a readable JSON record (cut short, overwritten) is not complete: the case is generated again."""
    marker = case_dir / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):  # cut short or overwritten: generated again
        return False
    if not isinstance(info, dict) or (fp is not None and info.get("fingerprint") != fp):
        return False
    return not missing_files(case_dir, info) and not changed_files(case_dir, info)


def generate_case(case: str, params: ParamsModel, out_dir: Path, progress: bool = True, force: bool = False) -> Path:
    """Generate every split of ``case`` into ``out_dir/<profile>/<case>`` and return that directory.

    Up to date (same fingerprint: config, profile, seed, schema, sources) → nothing is recomputed unless
    ``force``. The completion marker ``dataset.json`` is removed first and written last.
    """
    problem = pdes.get(case)
    params.case(case)
    case_dir = Path(out_dir) / params.profile / case
    fp = fingerprint(case, params)
    if not force and is_complete(case_dir, fp):
        return case_dir
    case_dir.mkdir(parents=True, exist_ok=True)
    with _case_lock(case_dir):
        if not force and is_complete(case_dir, fp):
            return case_dir  # another process finished it while this one waited
        return _generate_locked(case, problem, params, case_dir, fp, progress)


@contextmanager
def _case_lock(case_dir: Path) -> Iterator[None]:
    """Serialise writers of one case folder across processes (two pipeline runs at once)."""
    with open(case_dir.parent / f".{case_dir.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate_locked(case: str, problem: Problem, params: ParamsModel, case_dir: Path, fp: str, progress: bool) -> Path:
    (case_dir / MARKER).unlink(missing_ok=True)
    for stale in case_dir.glob(".*.partial"):
        stale.unlink()
    files: dict[str, str] = {}
    for split in SPLITS:
        h5_path, manifest_path = generate_split(case, split, params, case_dir, progress=progress)
        files[h5_path.name] = _sha256(h5_path)
        files[manifest_path.name] = _sha256(manifest_path)
    info = {
        "case": case,
        "family": problem.family,
        "profile": params.profile,
        "seed": params.seed,
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fp,
        "sizes": params.sizes(case).model_dump(),
        "files": files,
    }
    write_json(case_dir / MARKER, info)
    return case_dir
