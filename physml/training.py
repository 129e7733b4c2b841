"""The one training loop of physml, shared by the ProbConserv black boxes and the BOON operators.

``fit`` minimises ``loss_fn(model, batch)`` with Adam (optional weight decay, step learning-rate
decay and gradient clipping), validates every epoch and keeps the weights of the best validation
epoch. The checkpoint is one file written atomically (temporary file + ``os.replace``) after every
epoch; it holds only tensors and json-able values, so it loads with ``torch.load(weights_only=True)``:

    {"format": 1,
     "case": str, "model_config": dict (json-able, includes "case"),
     "model_state": best weights (state dict),
     "best_val": float, "best_epoch": int, "history": [per-epoch dicts],
     "train_config": dict, "data_version": str | None (what the model was trained on, e.g. the
     dataset's fingerprint), "code_version": str (:func:`code_version` of the model and the loss),
     "resume": {"epoch": last finished epoch, "model_state": its weights, "optimizer_state",
                "scheduler_state", "rng": torch / numpy / python / cuda generator states}}

Determinism: the data order of epoch e is a permutation drawn from a generator seeded with
(seed, e), independent of the global RNG; the global RNGs (used by the model, e.g. latent samples or
dropout) are seeded once at the start and saved with every checkpoint. A run interrupted after epoch
e and resumed therefore continues at e + 1 and ends with the same weights as an uninterrupted run
(exactly on CPU; on CUDA up to the non-determinism of its kernels).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import random
import sys
import types
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from physml.atomic import atomic_path, write_json
# MAX_SEED, the bound of params.yaml's seed, is far below the ~9e12 where _epoch_order's
# seed · 1 000 003 + epoch would overflow torch's int64 seed
from physml.config import MAX_SEED

CHECKPOINT_FORMAT = 1

LossFn = Callable[[nn.Module, Any], torch.Tensor]
ValFn = Callable[[nn.Module, Dataset, "TrainConfig"], float]


def model_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """The ``loss_fn`` of :func:`fit` for a model that defines its own ``loss(batch) -> scalar`` (the black boxes
    of :mod:`physml.models`), through a (Distributed)DataParallel wrapper. Here, not beside the models, so
    that a checkpoint's :func:`code_version` covers the trained model's code and not every model's."""
    return _unwrap(model).loss(batch)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (json-able via :meth:`to_dict`).

    ``lr_step``: multiply the learning rate by ``lr_gamma`` every ``lr_step`` epochs (None: constant).
    ``grad_clip``: clip the global gradient norm to this value (None: no clipping).
    ``device``: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:<i>".
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    lr_step: int | None = None
    lr_gamma: float = 0.5
    seed: int = 0
    device: str = "auto"
    grad_clip: float | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be finite and > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay!r}")
        if self.lr_step is not None and (not isinstance(self.lr_step, int) or self.lr_step < 1):
            raise ValueError(f"lr_step must be None or an integer >= 1, got {self.lr_step!r}")
        if not (0 < self.lr_gamma <= 1):
            raise ValueError(f"lr_gamma must lie in (0, 1], got {self.lr_gamma!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"grad_clip must be None or finite and > 0, got {self.grad_clip!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        _parse_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a json-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (e.g. a params.yaml section); unknown keys → ValueError."""
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**dict(values))


@dataclass
class TrainResult:
    """What ``fit`` returns: best validation loss, its epoch (1-based), per-epoch history."""

    best_val: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint_path: Path | None = None


def _parse_device(device: str) -> str:
    if not isinstance(device, str):
        raise ValueError(f"device must be a string, got {device!r}")
    if device in ("auto", "cpu", "cuda"):
        return device
    if device.startswith("cuda:") and device[5:].isdigit():
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")


def select_device(device: str = "auto") -> torch.device:
    """"auto" → CUDA when available, else CPU; an explicit CUDA device that is absent → ValueError."""
    device = _parse_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [
            np_state[0],
            torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (tensor, or nested dict / list / tuple of them) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(to_device(value, device) for value in batch)
    if isinstance(batch, list):
        return [to_device(value, device) for value in batch]
    return batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, Mapping):
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, (tuple, list)) and batch:
        return _batch_size(batch[0])
    return 1


def _check_json(model_config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(model_config, Mapping):
        raise ValueError(f"model_config must be a dict, got {type(model_config).__name__}")
    case = model_config.get("case")
    if not isinstance(case, str) or not case:
        raise ValueError("model_config must contain a non-empty string field 'case'")
    try:
        return json.loads(json.dumps(dict(model_config)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"model_config must be json-able: {err}") from err


def _cpu_state(module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _interned(obj: Any) -> Any:
    """``obj`` with every str in its dicts, lists and tuples interned.

    Pickle memoises by object identity, so a key read back from a checkpoint (a new str) and the same
    key written in this module (an interned literal) pickle to different bytes; interning them makes a
    resumed training's checkpoint the same file, byte for byte, as an uninterrupted one.
    """
    if type(obj) is str:
        return sys.intern(obj)
    if type(obj) in (dict, OrderedDict):
        return type(obj)((_interned(k), _interned(v)) for k, v in obj.items())
    if type(obj) in (list, tuple):
        return type(obj)(_interned(v) for v in obj)
    return obj


def _epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """The sample order of one epoch: a permutation seeded by (seed, epoch), sharded by rank.

    With ``world`` > 1 the permutation is padded with its own first entries to a multiple of ``world``
    (as ``DistributedSampler`` does), so every rank gets ⌈n / world⌉ samples, hence as many batches as
    every other rank, and no rank waits at a gradient all-reduce the others never reach.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    if world > 1:
        order = [order[i % n] for i in range(-(-n // world) * world)][rank::world]
    return order


def _average_gradients(model: nn.Module, world: int) -> None:
    """Replace every parameter's gradient by its mean over the ``world`` ranks (one all-reduce per
    parameter; a parameter without a gradient on this rank contributes zeros), so the replicas stay equal."""
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        torch.distributed.all_reduce(param.grad)
        param.grad.div_(world)


def _default_val(loss_fn: LossFn) -> ValFn:
    def validate(model: nn.Module, data: Dataset, config: TrainConfig) -> float:
        device = next(iter(model.parameters())).device
        loader = DataLoader(data, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers)
        total, count = 0.0, 0
        for batch in loader:
            batch = to_device(batch, device)
            size = _batch_size(batch)
            total += float(loss_fn(model, batch)) * size
            count += size
        if count == 0:
            raise ValueError("val_data is empty")
        return total / count

    return validate


def code_version(model: nn.Module, loss_fn: LossFn) -> str:
    """Fingerprint of the physml source a training of ``model`` with ``loss_fn`` runs, kept in its checkpoint
    so that a finished or interrupted training is never resumed by changed code (:func:`resumable`).

    Hashes (sha256 over each file's path inside the package and its bytes, in path order) the physml modules
    that define the classes of ``model``, of its submodules and of their bases, the module of ``loss_fn``
    and this one, and every physml module those import names from, transitively (the SoftC loss's
    quadrature, :mod:`physml.constraints.conservation`, through the model's module). Deliberately broad
    (an edited docstring retrains too); blind only to code reached without a module-level import.
    """
    def physml_module(name: object) -> bool:
        return isinstance(name, str) and name.split(".")[0] == "physml"

    root = Path(__file__).resolve().parent
    classes = {cls.__module__ for m in _unwrap(model).modules() for cls in type(m).__mro__}
    names = {name for name in classes if physml_module(name)}
    names |= {name for name in (getattr(loss_fn, "__module__", None), __name__) if physml_module(name)}
    pending = list(names)
    while pending:
        scanned = pending.pop()
        for value in vars(sys.modules[scanned]).values():
            owner = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(value, types.ModuleType) and owner.startswith(scanned + "."):
                continue  # a submodule bound on its package by whichever import came first: not this code's
            if physml_module(owner) and owner not in names and owner in sys.modules:
                names.add(owner)
                pending.append(owner)
    digest = hashlib.sha256()
    for path in sorted(Path(inspect.getfile(sys.modules[name])).resolve() for name in names):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def write_wall_clock(model_dir: Path, seconds: Mapping[str, float]) -> Path:
    """Training wall-clock seconds per network, written *beside* ``model_dir`` as ``<name>.seconds.json``.

    Kept out of the checkpoints and the model folder's summary: a retraining with identical results then
    leaves the folder byte-identical, so DVC's hash of it is unchanged and the downstream stages are skipped.
    """
    path = Path(model_dir).with_name(Path(model_dir).name + ".seconds.json")
    return write_json(path, {k: round(float(v), 3) for k, v in seconds.items()})


def _bar_label(case: str, checkpoint_path: Path, seed: int) -> str:
    """The progress bar's name for one network: its checkpoint path from the case folder on, without the
    suffix, and the seed (``train heat/anp/softc seed 0``), so that the bars of one case tell apart."""
    parts = checkpoint_path.with_suffix("").parts
    named = "/".join(parts[len(parts) - 1 - parts[::-1].index(case):]) if case in parts else f"{case} {parts[-1]}"
    return f"train {named} seed {seed}"


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: Dataset,
    val_data: Dataset,
    config: TrainConfig,
    checkpoint_path: str | Path,
    model_config: Mapping[str, Any],
    resume: bool = True,
    progress: bool = True,
    val_fn: ValFn | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    data_version: str | None = None,
) -> TrainResult:
    """Train ``model`` to minimise ``loss_fn(model, batch)``; keep and checkpoint the best validation epoch.

    ``loss_fn`` returns a scalar mean loss of the batch. ``val_fn(model, val_data, config) -> float``
    (default: the batch-size weighted mean of ``loss_fn`` over ``val_data``) runs under
    ``torch.no_grad`` with the model in eval mode; lower is better. ``model_config`` is the json-able
    dict that rebuilds the model (see :func:`load_checkpoint`) and must contain "case".
    ``on_epoch_end`` receives each history row {"epoch", "train_loss", "val_loss", "lr"} (e.g. to log
    to MLflow). Nothing in the checkpoint depends on wall-clock time, so the same training gives the same
    file, byte for byte (:func:`write_wall_clock` keeps the seconds beside the model folder). With
    ``resume`` and an existing checkpoint of the same model_config, TrainConfig (``epochs`` may
    differ), ``data_version`` and code (:func:`code_version` of ``model`` and ``loss_fn``; see
    :func:`resumable`), training continues after the last finished epoch; with an incompatible one →
    ValueError naming what differs.
    On return the model holds the best weights (on the training device).

    Under torch.distributed (the caller initialises the process group, e.g. through ``torchrun``; every
    rank calls ``fit`` with the same seed, hence the same initial weights): each rank trains on an equal
    shard of every epoch's permutation (:func:`_epoch_order`), the gradients are averaged over the ranks
    after each backward (:func:`_average_gradients`), so the replicas take the same steps, validation
    losses are averaged over ranks and only rank 0 writes the checkpoint. A DistributedDataParallel
    wrapper is accepted and adds nothing: ``loss_fn`` calls the wrapped module's ``loss``, not the
    wrapper's ``forward``, which is where DDP would synchronise.
    """
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable (model, batch) -> scalar tensor")
    if len(train_data) == 0:  # type: ignore[arg-type]
        raise ValueError("train_data is empty")
    if len(val_data) == 0:  # type: ignore[arg-type]
        raise ValueError("val_data is empty")
    model_config = _check_json(model_config)
    checkpoint_path = Path(checkpoint_path)
    device = select_device(config.device)
    rank, world = _dist_info()
    validate = val_fn if val_fn is not None else _default_val(loss_fn)
    code = code_version(model, loss_fn)

    seed_everything(config.seed)
    model.to(device)
    inner = _unwrap(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
        if config.lr_step is not None
        else None
    )

    start_epoch = 1
    best_val, best_epoch = math.inf, 0
    best_state = _cpu_state(inner)
    history: list[dict[str, float]] = []
    if resume and checkpoint_path.exists():
        payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        _check_compatible(payload, model_config, config, data_version, code, checkpoint_path)
        state = payload["resume"]
        inner.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler_state"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
        best_val, best_epoch = float(payload["best_val"]), int(payload["best_epoch"])
        best_state = payload["model_state"]
        history = list(payload["history"])

    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, initial=start_epoch - 1, desc=_bar_label(model_config["case"], checkpoint_path,
                                                                               config.seed), unit="epoch")

    n_train = len(train_data)  # type: ignore[arg-type]
    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        order = _epoch_order(n_train, config.seed, epoch, rank, world)
        loader = DataLoader(
            train_data,
            batch_size=config.batch_size,
            sampler=order,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed + epoch),
        )
        total, count = 0.0, 0
        for step, batch in enumerate(loader):
            batch = to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            if loss.dim() != 0:
                raise ValueError(f"loss_fn must return a scalar tensor, got shape {tuple(loss.shape)}")
            finite = torch.isfinite(loss.detach()).to(torch.float64).reshape(1)
            if world > 1:  # every rank stops, not only the one that diverged (the others would wait forever)
                torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
            if not bool(finite.item()):
                raise FloatingPointError(f"non-finite training loss ({loss.item()} on rank {rank}) at epoch {epoch}, "
                                         f"batch {step}")
            loss.backward()
            if world > 1:
                _average_gradients(model, world)
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            size = _batch_size(batch)
            total += float(loss.detach()) * size
            count += size
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()

        model.eval()
        with torch.no_grad():
            val_loss = float(validate(model, val_data, config))
        if world > 1:
            reduced = torch.tensor([val_loss, total, float(count)], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(reduced)
            val_loss = float(reduced[0]) / world
            total, count = float(reduced[1]), int(reduced[2])
        train_loss = total / max(count, 1)
        if not math.isfinite(val_loss):
            raise FloatingPointError(f"non-finite validation loss {val_loss} at epoch {epoch}")
        if val_loss < best_val:
            best_val, best_epoch = val_loss, epoch
            best_state = _cpu_state(inner)
        row = {"epoch": float(epoch), "train_loss": train_loss, "val_loss": val_loss, "lr": float(lr)}
        history.append(row)
        if rank == 0:
            checkpoint = {
                "format": CHECKPOINT_FORMAT,
                "case": model_config["case"],
                "model_config": model_config,
                "model_state": best_state,
                "best_val": best_val,
                "best_epoch": best_epoch,
                "history": history,
                "train_config": config.to_dict(),
                "data_version": data_version,
                "code_version": code,
                "resume": {
                    "epoch": epoch,
                    "model_state": _cpu_state(inner),
                    "optimizer_state": optimizer.state_dict(),
                    "scheduler_state": scheduler.state_dict() if scheduler is not None else {},
                    "rng": _rng_state(),
                },
            }
            # through a file handle: given a path, torch.save names the archive's records after the
            # (temporary) file name, and the checkpoint's bytes would differ from run to run
            with atomic_path(checkpoint_path) as tmp, open(tmp, "wb") as handle:
                torch.save(_interned(checkpoint), handle)
        if world > 1:
            torch.distributed.barrier()
        if on_epoch_end is not None and rank == 0:
            on_epoch_end(dict(row))
        if bar is not None:
            bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", best=f"{best_val:.4g}")
            bar.update(1)
    if bar is not None:
        bar.close()

    inner.load_state_dict(best_state)
    return TrainResult(best_val=best_val, best_epoch=best_epoch, history=history, checkpoint_path=checkpoint_path)


def resumable(path: str | Path, model_config: Mapping[str, Any], config: TrainConfig,
              data_version: str | None = None, *, code: str) -> bool:
    """Whether ``fit(..., resume=True)`` would continue the checkpoint at ``path``: it exists, is a physml
    training checkpoint, and was written with the same ``model_config``, ``TrainConfig`` (epochs and device
    aside: more epochs continue the run; it may not have done more than ``config.epochs``), ``data_version``
    and ``code`` (:func:`code_version` of the model
    and loss about to be fitted). Callers pass ``resume=resumable(...)``, so a change of settings,
    data or code retrains from scratch, and an unfinished retraining is never resumed as the old one (the
    old checkpoint still records the old settings)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        _check_compatible(read_checkpoint(path), _check_json(model_config), config, data_version, code, path)
    except Exception:  # noqa: BLE001 - an unreadable or incompatible checkpoint is retrained
        return False
    return True


def _check_compatible(
    payload: Mapping[str, Any], model_config: Mapping[str, Any], config: TrainConfig, data_version: str | None,
    code: str, path: Path,
) -> None:
    """A checkpoint may be resumed only by the same model_config, TrainConfig (up to more epochs), data and code."""
    if payload.get("format") != CHECKPOINT_FORMAT or "resume" not in payload:
        raise ValueError(f"{path}: not a physml training checkpoint (format {payload.get('format')!r})")
    if payload["model_config"] != model_config:
        raise ValueError(
            f"{path}: checkpoint model_config {payload['model_config']} differs from {model_config}; "
            "pass resume=False to start afresh"
        )
    saved = dict(payload["train_config"])
    current = config.to_dict()
    saved.pop("epochs"), current.pop("epochs")
    saved.pop("device", None), current.pop("device")
    if saved != current:
        raise ValueError(f"{path}: checkpoint TrainConfig {saved} differs from {current}; pass resume=False")
    done = int(payload["resume"]["epoch"])
    if done > config.epochs:
        raise ValueError(f"{path}: checkpoint has {done} epochs done, more than the {config.epochs} asked for (more "
                         "epochs continue a run, fewer do not cut it back); pass resume=False")
    if payload.get("data_version") != data_version:
        raise ValueError(f"{path}: checkpoint trained on data {payload.get('data_version')!r}, not {data_version!r}; "
                         "pass resume=False")
    if payload.get("code_version") != code:
        raise ValueError(f"{path}: checkpoint written by other code (physml source fingerprint "
                         f"{str(payload.get('code_version'))[:12]}, now {code[:12]}); pass resume=False")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (see the module docstring), loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a physml checkpoint of format {CHECKPOINT_FORMAT}")
    return payload


def load_checkpoint(
    path: str | Path,
    build_model: Callable[[dict[str, Any]], nn.Module],
    map_location: str | torch.device = "cpu",
    expect_case: str | Sequence[str] | None = None,
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Rebuild the best model of a checkpoint: ``build_model(model_config)`` then its state dict.

    Returns (model in eval mode, model_config, extra) with extra = {"best_val", "best_epoch",
    "history", "train_config", "data_version"}. ``expect_case``: the case (or cases) the caller expects; a checkpoint
    of another case → ValueError.
    """
    payload = read_checkpoint(path, map_location)
    case = payload["case"]
    if expect_case is not None:
        allowed = [expect_case] if isinstance(expect_case, str) else list(expect_case)
        if case not in allowed:
            raise ValueError(f"checkpoint {path} was trained on case {case!r}; expected one of {allowed}")
    model_config = dict(payload["model_config"])
    model = build_model(copy.deepcopy(model_config))
    model.load_state_dict(payload["model_state"])
    model.to(map_location)
    model.eval()
    extra = {key: payload[key] for key in ("best_val", "best_epoch", "history", "train_config")}
    extra["data_version"] = payload.get("data_version")
    return model, model_config, extra
