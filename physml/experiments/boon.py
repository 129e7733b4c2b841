"""BOON experiments: train, constrain and evaluate the FNO family on the operator cases (Saad et al., ICLR 2023).

One experiment is ``case × fno × constraint`` with constraint ∈ {none, overwrite, boon, boon_posthoc}:

* ``none``: the plain FNO (Li et al. 2021), trained with the relative L2 loss;
* ``overwrite``: the plain FNO with only its output's boundary entries set to meet the condition
  (:class:`physml.models.boon.OverwriteFNO`): the control, as exact on the boundary as BOON, that tells how
  much of BOON's gain is more than the boundary entries themselves;
* ``boon``: the FNO whose kernel layers are boundary-corrected *during training*
  (:class:`physml.models.boon.BOONFNO`), same initial weights, data order and budget;
* ``boon_posthoc``: the plain FNO's weights wrapped by the correction at inference only.

The variant follows the case (:data:`VARIANTS`):

=================== ==================== ================================ =====================
case                layout               condition                        input channels
=================== ==================== ================================ =====================
burgers_dirichlet   1-D single step      u(0) = u(1) = 0 at T             u₀
heat_neumann        1-D + time           u_x(0) = 0, u_x(1) = U sin(πt)   u₀
stokes2             1-D + time           u(0,t) = U cos ωt; u(1,t) exact  u₀
wave                1-D + time           u(0, t) = u(1, t) = 0            u₀, c (constant field)
cavity              2-D + time, (u, v)   wall velocities on all 4 walls   u₀, v₀
=================== ==================== ================================ =====================

The wave speed ``c`` is not a function of the wave's initial displacement u₀ (the string is released
from rest), so the wave operator takes it as a second, constant input channel; every other case's
parameters are visible in u₀. The Neumann data are enforced on the second-order one-sided stencil
u_x(x₀) ≈ (−3u₀ + 4u₁ − u₂)/(2h) (:data:`NEUMANN_ORDER`); the boundary error of a Neumann case is the
max |stencil derivative of the prediction − prescribed u_x|.

Data layout (datasets, :mod:`physml.data`): ``u0 (N, *S)``, ``u (N, nt, *S)``, ``boundary (N, nt, 2)`` (1-D)
or ``(N, nt, 4, 2)`` (cavity: walls bottom, top, left, right × (u, v)), with S = (nx,) or (ny, nx, 3).
Model layout (:mod:`physml.models.fno`): time last, ``(B, nx, nt)``; the cavity as ``(B, nx, ny, nt, 2)``
(x first, so that the y-walls, written last by the correction, own the corners: the lid row includes
both top corners). Training runs in float32; predictions are made in float64, so that the corrected
boundary values are exact to float64 round-off (≤ 1e-10) for every case.

Files: ``models/…/{plain,boon}.pt`` (checkpoints of :func:`physml.training.fit`) and
``train_summary.json``; ``predictions/…/predictions.h5`` (``<constraint>`` arrays in the dataset layout);
``metrics/…/<constraint>.json`` (flat {metric: float}), ``per_time.json`` and ``figures/`` (``*.png``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from physml import pdes
from physml.config import CONSTRAINTS as _ALL_CONSTRAINTS, ParamsModel
from physml.data import open_dataset
from physml.experiments import PREDICTIONS_FILE, checkpoints_digest, data_version, rerun
from physml.experiments.seeds import finite_error, seed_folder, seed_summary
from physml.experiments.variants import VARIANTS, Variant, modes_per_axis
from physml.experiments.variants import variant as _variant
from physml.atomic import atomic_path, move_contents, staging_dir, write_json
from physml.metrics import relative_l2
from physml.models import build_model
from physml.models.boon import NEUMANN_STENCILS, BOONFNO, OverwriteFNO, operator_forward, operator_loss
from physml.threads import torch_threads
from physml.training import (TrainConfig, code_version, fit, load_checkpoint, resumable, select_device,
                             write_wall_clock)

__all__ = [
    "CONSTRAINTS",
    "NEUMANN_ORDER",
    "VARIANTS",
    "Variant",
    "OperatorSplit",
    "boundary_error",
    "build_model",
    "constrain",
    "evaluate",
    "load_split",
    "predict",
    "train",
]

CONSTRAINTS: tuple[str, ...] = _ALL_CONSTRAINTS["boon"]
NEUMANN_ORDER = 2
"""Order of the one-sided stencil on which the Neumann data are enforced and measured."""
PLAIN_FILE, BOON_FILE, SUMMARY_FILE = "plain.pt", "boon.pt", "train_summary.json"
PER_TIME_FILE = "per_time.json"
"""Name of the file of relative L2 per output time (records, one per time), beside the metrics files."""


# ---- data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorSplit:
    """One split in the model layout (float64 numpy).

    ``inputs`` (N, nx[, ny][, c_in]); ``targets`` (N, nx, nt) / (N, nx) single step / (N, nx, ny, nt, 2)
    cavity; ``bc``: one array per bounded axis as :class:`BOONFNO` takes it ((N, nt, 2), (N, 2), or for
    the cavity x-walls (N, ny, nt, 2, 2) and y-walls (N, nx, nt, 2, 2)); ``truth`` (N, nt, *S) the dataset
    layout of the targets; ``boundary`` the dataset's boundary data (N, nt, 2) / (N, nt, 4, 2).
    """

    case: str
    x: np.ndarray
    t: np.ndarray
    params: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    bc: tuple[np.ndarray, ...]
    truth: np.ndarray
    boundary: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def tensors(self, dtype: torch.dtype = torch.float32) -> TensorDataset:
        """(inputs, targets, *bc) as a TensorDataset of ``dtype``."""
        arrays = (self.inputs, self.targets, *self.bc)
        return TensorDataset(*(torch.as_tensor(a, dtype=dtype) for a in arrays))


def _expected_boundary_shape(case: str, n: int, nt: int) -> tuple[int, ...]:
    return (n, nt, 4, 2) if _variant(case).n_space == 2 else (n, nt, 2)


def _boundary_from_problem(case: str, params: np.ndarray, names: Sequence[str], t: np.ndarray) -> np.ndarray:
    problem = pdes.get(case)
    return np.stack([np.asarray(problem.boundary_data(dict(zip(names, map(float, row), strict=True)), t),
                            dtype=np.float64) for row in params])


def _to_model_layout(case: str, u: np.ndarray) -> np.ndarray:
    """Dataset layout ``(N, nt, *S)`` → model layout (see :class:`OperatorSplit`)."""
    var = _variant(case)
    if var.n_space == 1:
        return u[:, 0] if not var.multistep else np.swapaxes(u, 1, 2)
    fields = u[..., list(var.channels)]  # (N, nt, ny, nx, c)
    return np.transpose(fields, (0, 3, 2, 1, 4))  # (N, nx, ny, nt, c)


def _to_data_layout(case: str, y: np.ndarray) -> np.ndarray:
    """Model layout → dataset layout ``(N, nt, *S)`` (the cavity keeps only the predicted channels)."""
    var = _variant(case)
    if var.n_space == 1:
        return y[:, None, :] if not var.multistep else np.swapaxes(y, 1, 2)
    return np.transpose(y, (0, 3, 2, 1, 4))  # (N, nt, ny, nx, c)


def _bc_model_layout(case: str, boundary: np.ndarray, nx: int) -> tuple[np.ndarray, ...]:
    var = _variant(case)
    if var.n_space == 1:
        return (boundary[:, 0],) if not var.multistep else (boundary,)
    comps = list(var.channels)
    walls = boundary[..., comps]  # (N, nt, 4, c): bottom, top, left, right
    n, nt, _, c = walls.shape
    ny = nx  # the cavity's grid is square (one x for both axes; load_split checks (nx, nx, 3))
    x_walls = np.broadcast_to(np.stack([walls[:, :, 2], walls[:, :, 3]], axis=2)[:, None], (n, ny, nt, 2, c))
    y_walls = np.broadcast_to(np.stack([walls[:, :, 0], walls[:, :, 1]], axis=2)[:, None], (n, nx, nt, 2, c))
    return np.ascontiguousarray(x_walls), np.ascontiguousarray(y_walls)


def check_output_times(case: str, t: np.ndarray, where: str) -> None:
    """Refuse output times ``t`` (nt,) that the operator of ``case`` cannot learn, naming ``where`` they come
    from: a single-step operator u₀ ↦ u(T) needs exactly one; a multi-step one at least two, equally spaced
    (the FNO's time axis is a uniform grid from t[0] to t[-1]: its coordinates and its Fourier modes).
    The data loader checks the files; ``physml generate`` checks params.yaml's grid before solving."""
    var = _variant(case)
    t = np.asarray(t, dtype=np.float64)
    nt = t.size
    if var.multistep and nt < 2:
        raise ValueError(f"{where} has {nt} output time(s); the 1-D/2-D + time operator of {case} needs nt >= 2")
    if not var.multistep and nt != 1:
        raise ValueError(f"{where} has {nt} output times; {case} is a single-step operator u₀ ↦ u(T) and needs "
                         "exactly one (grid nt: 1)")
    if var.multistep and not np.allclose(np.diff(t), (t[-1] - t[0]) / (nt - 1), rtol=1e-9, atol=0.0):
        raise ValueError(f"{where}: the output times {t.tolist()} are not equally spaced; the FNO's time axis is a "
                         f"uniform grid from t[0] to t[-1] (its coordinates and its Fourier modes), so {case} needs "
                         "uniform times (grid nt, not an uneven times list)")


def load_split(case: str, data_dir: str | Path, split: str) -> OperatorSplit:
    """Read ``<data_dir>/<split>.h5`` of an operator ``case`` into the model layout.

    Boundary data come from the dataset's ``boundary`` array, or from ``problem.boundary_data`` when the
    file has none; a wrong shape → ValueError naming the array and the expected shape.
    """
    var = _variant(case)
    path = Path(data_dir) / f"{split}.h5"
    with open_dataset(path) as ds:
        x, t = ds["x"][:], ds["t"][:]
        params = ds["params"][:]
        names = ds.parameter_names
        u0, u = ds["u0"][:], ds["u"][:]
        boundary = ds["boundary"][:] if "boundary" in ds.keys() else _boundary_from_problem(case, params, names, t)
    n, nt, nx = u.shape[0], t.size, x.size
    field = (nx,) if var.n_space == 1 else (nx, nx, 3)
    if u0.shape != (n, *field) or u.shape != (n, nt, *field):
        raise ValueError(f"{path}: u0 {u0.shape} / u {u.shape} must be {(n, *field)} / {(n, nt, *field)} for {case}")
    check_output_times(case, t, f"{path}: t")
    want = _expected_boundary_shape(case, n, nt)
    if boundary.shape != want:
        raise ValueError(f"{path}: boundary has shape {boundary.shape}; {case} needs {want} "
                         f"({'(N, nt, walls bottom/top/left/right, (u, v))' if var.n_space == 2 else '(N, nt, (left, right))'})")
    for name in var.param_inputs:
        if name not in names:
            raise ValueError(f"{path}: parameter {name!r} (an input of the {case} operator) is missing; has {names}")
    inputs = u0 if var.n_space == 1 else np.transpose(u0[..., list(var.channels)], (0, 2, 1, 3))
    if var.param_inputs:
        consts = [np.broadcast_to(params[:, names.index(p)].reshape(n, *([1] * var.n_space)), inputs.shape[:1 + var.n_space])
                  for p in var.param_inputs]
        base = inputs[..., None] if var.out_channels == 1 else inputs
        inputs = np.concatenate([base, *(c[..., None] for c in consts)], axis=-1)
    return OperatorSplit(case=case, x=x, t=t, params=params, inputs=np.ascontiguousarray(inputs, dtype=np.float64),
                         targets=np.ascontiguousarray(_to_model_layout(case, u), dtype=np.float64),
                         bc=_bc_model_layout(case, boundary, nx), truth=u if var.n_space == 1 else u[..., list(var.channels)],
                         boundary=boundary)


# ---- models ----------------------------------------------------------------------------------------


def fno_config(case: str, params: ParamsModel, x: np.ndarray, t: np.ndarray) -> dict[str, Any]:
    """Constructor arguments of the case's FNO (params.yaml ``models.fno`` with per-case overrides)."""
    var = _variant(case)
    settings = params.model_settings("fno", case)
    problem = pdes.get(case)
    domain = [tuple(map(float, problem.x_domain))] * var.n_space
    nt, padding = None, 0
    if var.multistep:
        nt, padding = int(t.size), settings.time_padding
        domain.append((float(t[0]), float(t[-1])))
    grid = var.fno_grid(x.size, int(t.size), padding)  # the Fourier layers' grid
    try:
        modes = modes_per_axis(settings.modes, grid)
    except ValueError as exc:  # params.yaml is checked against its own grids; these data have another
        raise ValueError(f"models.fno modes for {case}: {exc}") from None
    return {"n_space": var.n_space, "nt": nt, "in_channels": var.in_channels, "out_channels": var.out_channels,
            "width": settings.width, "modes": modes, "n_layers": settings.layers,
            "domain": [list(d) for d in domain], "time_padding": padding}


def _model_config(case: str, variant: str, fno_cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"case": case, "variant": variant, "fno": dict(fno_cfg), "boundary": _variant(case).boundary,
            "neumann_order": NEUMANN_ORDER}


def _train_config(case: str, params: ParamsModel) -> TrainConfig:
    tc = params.model_settings("fno", case).train
    return TrainConfig(epochs=tc.epochs, batch_size=tc.batch_size, lr=tc.lr, weight_decay=tc.weight_decay,
                       lr_step=tc.lr_step, lr_gamma=tc.lr_gamma, seed=params.seed, grad_clip=tc.grad_clip)


def _check_fno(case: str, model: str) -> None:
    _variant(case)
    if model != "fno":
        raise ValueError(f"model: {model!r} is not a BOON base operator; allowed: fno")


def train(case: str, model: str, params: ParamsModel, data_dir: Path, out_dir: Path, progress: bool = True) -> Path:
    """Train the plain FNO (``plain.pt``) and, when ``boon`` is in the matrix, the BOON-corrected FNO
    (``boon.pt``) on ``case`` with the same initial weights, data order and budget; returns ``out_dir``.

    Loss: relative L2 over the whole output field; best validation epoch kept (:func:`physml.training.fit`).
    A checkpoint of the same data and settings is resumed (an interrupted run continues); any other is
    retrained from scratch (:func:`physml.training.resumable`). ``train_summary.json``: per variant
    {best_val, best_epoch, epochs, parameters}; wall-clock seconds go beside the folder
    (:func:`physml.training.write_wall_clock`).
    """
    _check_fno(case, model)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    data = data_version(data_dir, case, params.profile)
    train_split, val_split = load_split(case, data_dir, "train"), load_split(case, data_dir, "val")
    seconds = _train_variants(case, model, params, train_split, val_split, data, out_dir, params.seed, progress)
    write_wall_clock(out_dir, seconds)
    return out_dir


def _train_variants(case: str, model: str, params: ParamsModel, train_split: OperatorSplit, val_split: OperatorSplit,
                    data: str | None, out_dir: Path, seed: int, progress: bool) -> dict[str, float]:
    """Fit the plain and (when ``boon`` is a constraint) the BOON FNO from the initial weights and data order of
    ``seed`` into ``out_dir``, then write its ``train_summary.json``; returns wall-clock seconds per variant.
    ``data``: the splits' data version (:func:`physml.experiments.data_version`), kept in each checkpoint."""
    fno_cfg = fno_config(case, params, train_split.x, train_split.t)
    config = replace(_train_config(case, params), seed=seed)
    variants = ["plain"] + (["boon"] if "boon" in params.matrix.boon.constraints else [])
    summary: dict[str, Any] = {"case": case, "model": model, "fno": fno_cfg, "train_config": config.to_dict(),
                               "n_train": len(train_split), "n_val": len(val_split)}
    train_data, val_data = train_split.tensors(), val_split.tensors()
    seconds: dict[str, float] = {}
    with torch_threads():
        for variant in variants:
            torch.manual_seed(seed)
            cfg = _model_config(case, variant, fno_cfg)
            path = out_dir / (PLAIN_FILE if variant == "plain" else BOON_FILE)
            net = build_model(cfg)
            started = time.perf_counter()
            resume = resumable(path, cfg, config, data, code=code_version(net, operator_loss))
            result = fit(net, operator_loss, train_data, val_data, config, path, cfg, resume=resume, progress=progress,
                         data_version=data)
            seconds[variant] = time.perf_counter() - started
            summary[variant] = {"best_val": result.best_val, "best_epoch": result.best_epoch, "epochs": config.epochs,
                                "parameters": sum(p.numel() for p in net.parameters())}
    write_json(out_dir / SUMMARY_FILE, summary)
    return seconds


# ---- constrain -------------------------------------------------------------------------------------


@torch.no_grad()
def predict(net: nn.Module, split: OperatorSplit, batch_size: int = 64, device: str = "auto") -> np.ndarray:
    """Model-layout predictions of ``net`` on ``split`` in float64 (the net is cast to float64)."""
    dev = select_device(device)
    net = net.to(device=dev, dtype=torch.float64).eval()
    data = split.tensors(torch.float64)
    out = []
    for start in range(0, len(split), batch_size):
        inputs, _, *bc = (a[start:start + batch_size].to(dev) for a in data.tensors)
        out.append(operator_forward(net, inputs, bc).cpu().numpy())
    return np.concatenate(out, axis=0)


def _constraint_predictions(case: str, params: ParamsModel, model_dir: Path, split: OperatorSplit,
                            constraints: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Each constraint's predictions of ``split`` (dataset layout) from the networks in ``model_dir``, and
    the plain FNO's model config."""
    var = _variant(case)
    preds: dict[str, np.ndarray] = {}
    plain, plain_cfg, _ = load_checkpoint(model_dir / PLAIN_FILE, build_model, expect_case=case)
    for name in constraints:
        if name == "none":
            net = plain
        elif name == "overwrite":
            net = OverwriteFNO(plain, var.boundary, neumann_order=NEUMANN_ORDER)
        elif name == "boon":
            net, _, _ = load_checkpoint(model_dir / BOON_FILE, build_model, expect_case=case)
        else:
            fno, _, _ = load_checkpoint(model_dir / PLAIN_FILE, build_model, expect_case=case)
            rcond = params.models.boon_posthoc.rcond
            net = BOONFNO(fno, var.boundary, neumann_order=NEUMANN_ORDER, rcond=rcond)
        with torch_threads():
            preds[name] = _to_data_layout(case, predict(net, split))
    return preds, plain_cfg


def constrain(case: str, model: str, params: ParamsModel, data_dir: Path, model_dir: Path, out_dir: Path) -> Path:
    """Test-split predictions of every BOON constraint → ``out_dir/predictions.h5`` (written atomically).

    ``none``: plain FNO; ``overwrite``: the plain FNO with its output's boundary entries set;
    ``boon``: the BOON-trained FNO; ``boon_posthoc``: the plain FNO's weights in the corrected forward, with
    the conditioning guard ``models.boon_posthoc.rcond``. Arrays in the dataset layout
    ``(N, nt, *S)`` (cavity: S = (ny, nx, 2) for (u, v)).
    """
    _check_fno(case, model)
    constraints = list(params.matrix.boon.constraints)
    unknown = [c for c in constraints if c not in CONSTRAINTS]
    if unknown:
        raise ValueError(f"matrix.boon.constraints: {unknown} unknown; allowed: {', '.join(CONSTRAINTS)}")
    out_dir = Path(out_dir)
    split = load_split(case, data_dir, "test")
    var = _variant(case)
    preds, plain_cfg = _constraint_predictions(case, params, Path(model_dir), split, constraints)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PREDICTIONS_FILE
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.attrs.update({"case": case, "model": model, "constraints": constraints, "dtype": "float64",
                         "boundary": var.boundary, "fno": json.dumps(plain_cfg["fno"]),
                         "data_version": data_version(data_dir, case, params.profile),
                         "checkpoints": checkpoints_digest(model_dir)})
        fh.create_dataset("x", data=split.x)
        fh.create_dataset("t", data=split.t)
        for name, arr in preds.items():
            fh.create_dataset(name, data=arr)
    return path


# ---- evaluate --------------------------------------------------------------------------------------


def boundary_values(case: str, field: np.ndarray, x: np.ndarray) -> np.ndarray:
    """What the condition constrains, in the layout of the boundary data.

    1-D Dirichlet: (u(x₀), u(x_N)) → (N, nt, 2). 1-D Neumann: the one-sided stencil derivatives
    (Σ a_k u_k / h, −Σ a_k u_{N−k} / h) of order :data:`NEUMANN_ORDER` → (N, nt, 2). Cavity ``(N, nt, ny,
    nx, 2)``: the wall values (N, nt, 4, 2, n) for the walls bottom (y = 0), top (y = 1), left (x = 0) and
    right (x = 1), components (u, v), and n points along each wall.
    """
    var = _variant(case)
    if var.n_space == 1:
        if var.boundary == "dirichlet":
            return np.stack([field[..., 0], field[..., -1]], axis=-1)
        h = float(x[1] - x[0])
        a = NEUMANN_STENCILS[NEUMANN_ORDER]
        left = sum(c * field[..., k] for k, c in enumerate(a)) / h
        right = -sum(c * field[..., -1 - k] for k, c in enumerate(a)) / h
        return np.stack([left, right], axis=-1)
    bottom, top = field[:, :, 0], field[:, :, -1]  # (N, nt, nx, c)
    left, right = field[:, :, :, 0], field[:, :, :, -1]  # (N, nt, ny, c)
    return np.stack([bottom, top, left, right], axis=2).swapaxes(-1, -2)  # (N, nt, 4, c, n)


def boundary_error(case: str, field: np.ndarray, boundary: np.ndarray, x: np.ndarray) -> float:
    """max |B(field) − g| over every sample, time and boundary point (B: :func:`boundary_values`).

    Cavity: the side walls are compared on 0 ≤ y < 1 (their data hold there; the lid row owns the top
    corners, :meth:`LidDrivenCavity.boundary_data`).
    """
    vals = boundary_values(case, field, x)
    if _variant(case).n_space == 1:
        return float(np.max(np.abs(vals - boundary)))
    err = np.abs(vals - boundary[..., None])  # (N, nt, 4, c, n)
    err[:, :, 2:, :, -1] = 0.0
    return float(np.max(err))


def _metrics(case: str, pred: np.ndarray, truth: np.ndarray, boundary: np.ndarray, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    n = pred.shape[0]
    whole = relative_l2(pred.reshape(n, -1), truth.reshape(n, -1), space_axes=1, reduce="none")
    space_axes = pred.ndim - 2
    per_time = np.asarray(relative_l2(pred, truth, space_axes=space_axes, reduce="none")).mean(axis=0)
    out = {"rel_l2": float(np.mean(whole)), "rel_l2_std": float(np.std(whole)), "rel_l2_final": float(per_time[-1]),
           "mse": float(np.mean((pred - truth) ** 2)), "boundary_max_abs": boundary_error(case, pred, boundary, x)}
    return out, per_time


def evaluate(case: str, model: str, params: ParamsModel, data_dir: Path, pred_dir: Path, out_dir: Path) -> dict[str, dict[str, float]]:
    """Metrics of every constraint → ``out_dir/<constraint>.json`` (flat {metric: float}); figures in
    ``out_dir/figures``; ``out_dir/per_time.json``: ``rel_l2_per_time``, the relative L2 per output time as
    records ``{t, <constraint>: value, …}`` (what ``dvc plots`` draws, dvc.yaml's top-level ``plots``), and the
    truth's own boundary mismatch ``truth_boundary_max_abs``; returns {constraint: metrics}.

    rel_l2: mean over test samples of ‖pred − true‖₂/‖true‖₂ over the whole field (all times); rel_l2_final:
    the same at the last output time; boundary_max_abs: :func:`boundary_error` (0 up to round-off for BOON).
    """
    _check_fno(case, model)
    split = load_split(case, data_dir, "test")
    out_dir = Path(out_dir)
    preds: dict[str, np.ndarray] = {}
    if not (Path(pred_dir) / PREDICTIONS_FILE).is_file():
        raise ValueError(f"no predictions {Path(pred_dir) / PREDICTIONS_FILE}; run "
                         f"{rerun('constrain', case, params.profile, model)} first")
    with h5py.File(Path(pred_dir) / PREDICTIONS_FILE, "r") as fh:
        for name in params.matrix.boon.constraints:
            if name not in fh:
                raise ValueError(f"{pred_dir}/{PREDICTIONS_FILE}: no predictions for constraint {name!r}; run constrain")
            preds[name] = fh[name][:]
    results: dict[str, dict[str, float]] = {}
    per_time: dict[str, Any] = {"t": split.t.tolist()}
    for name, pred in preds.items():
        if pred.shape != split.truth.shape:
            raise ValueError(f"predictions {name!r} have shape {pred.shape}; the test split needs {split.truth.shape}")
        results[name], per_time[name] = _metrics(case, pred, split.truth, split.boundary, split.x)
        per_time[name] = per_time[name].tolist()
        bad = [k for k, v in results[name].items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"{case} × {model} × {name}: non-finite metric(s) {bad}")
    records = [{"t": t, **{name: per_time[name][i] for name in preds}} for i, t in enumerate(per_time["t"])]
    per_time_file = {"rel_l2_per_time": records,
                     "truth_boundary_max_abs": boundary_error(case, split.truth, split.boundary, split.x)}
    # everything is computed and drawn before anything is moved into place (a failure leaves the old outputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    with staging_dir(out_dir / "evaluate") as staging:
        for name in results:
            write_json(staging / f"{name}.json", results[name])
        write_json(staging / PER_TIME_FILE, per_time_file)
        _figures(case, split, preds, per_time, staging / "figures")
        move_contents(staging, out_dir)
    return results


# ---- seed study ------------------------------------------------------------------------------------


def seed_study(case: str, model: str, params: ParamsModel, data_dir: Path, model_dir: Path, study_dir: Path,
               out_path: Path, progress: bool = True) -> dict[str, Any]:
    """Test relative L2 of every constraint over the seeds of ``matrix.boon.seeds`` → ``out_path`` (json).

    A difference of a few per cent between two networks trained once is within what the seed alone moves
    (initial weights and data order); the mean over seeds s_1 … s_n (:meth:`ParamsModel.study_seeds`) is the
    estimate the report compares. The first seed is the project seed: its networks are the main training's
    (``model_dir``); every other seed trains the plain and the BOON FNO exactly as :func:`train` does, with
    that seed, into ``study_dir/seed_<s>/`` (resumable). Writes and returns::

        {"case", "model", "seeds": [s_1, …, s_n],
         "rel_l2": {constraint: [e_1, …, e_n]},      # e_i: rel_l2 of evaluate, for seed s_i
         "rel_l2_mean": {constraint: mean_i e_i},
         "rel_l2_spread": {constraint: sample standard deviation of e_i (0 for n = 1)},
         "boon_ahead": #{i : e_i(boon) <= e_i(none)}}  # when both are constraints
    """
    _check_fno(case, model)
    data_dir, model_dir, study_dir = Path(data_dir), Path(model_dir), Path(study_dir)
    if not (model_dir / SUMMARY_FILE).is_file():
        raise ValueError(f"{model_dir}: no trained networks of the project seed; run "
                         f"{rerun('train', case, params.profile, model)} first")
    constraints = list(params.matrix.boon.constraints)
    seeds = params.study_seeds("boon")
    test = load_split(case, data_dir, "test")
    study_dir.mkdir(parents=True, exist_ok=True)
    if len(seeds) > 1:
        train_split, val_split = load_split(case, data_dir, "train"), load_split(case, data_dir, "val")
        data = data_version(data_dir, case, params.profile)
    rel_l2: dict[str, list[float]] = {c: [] for c in constraints}
    for seed in seeds:
        seed_dir = seed_folder(seed, params.seed, model_dir, study_dir)
        if seed != params.seed:
            _train_variants(case, model, params, train_split, val_split, data, seed_dir, seed, progress)
        preds, _ = _constraint_predictions(case, params, seed_dir, test, constraints)
        for name, pred in preds.items():
            error = _metrics(case, pred, test.truth, test.boundary, test.x)[0]["rel_l2"]
            rel_l2[name].append(finite_error(error, "rel_l2", f"{case} × {model} × {name}, seed {seed}",
                                             out_path))
    result = seed_summary(case, model, seeds, "rel_l2", rel_l2, ahead="boon")
    write_json(out_path, result)
    return result


# ---- figures ---------------------------------------------------------------------------------------

def _figures(case: str, split: OperatorSplit, preds: Mapping[str, np.ndarray], per_time: Mapping[str, Any], fig_dir: Path) -> list[Path]:
    from physml import plots

    LABELS, COLORS = plots.OPERATOR_LABELS, plots.OPERATOR_COLORS

    var = _variant(case)
    paths: list[Path] = []
    errors = {LABELS[k]: np.asarray(per_time[k]) for k in preds}
    colors = {LABELS[k]: COLORS[k] for k in preds}
    if var.multistep:
        paths.append(plots.error_over_time(split.t, errors, fig_dir / "error_over_time.png",
                                           title=f"{case}: relative L2 error over time", colors=colors))
    if case == "heat_neumann":
        grads = {LABELS[k]: boundary_values(case, v, split.x)[0] for k, v in preds.items()}
        paths.append(plots.boundary_gradient_over_time(split.t, split.boundary[0], grads, fig_dir / "boundary_gradient.png",
                                                       title=f"{case}: u_x at the boundaries (test sample 0)", colors=colors))
    if var.n_space == 1 and var.multistep:
        fields = {LABELS[k]: v[0] for k, v in preds.items()}
        paths.append(plots.field_error_panel(split.x, split.t, split.truth[0], fields, fig_dir / "field_error.png",
                                             title=f"{case}: test sample 0"))
    if not var.multistep:
        profiles = {LABELS[k]: v[0, 0] for k, v in preds.items()}
        paths.append(plots.operator_profiles(split.x, split.truth[0, 0], profiles, fig_dir / "profile.png",
                                             title=f"{case}: u(T, x), test sample 0", colors=colors))
    return paths

