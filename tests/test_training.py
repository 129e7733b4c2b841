"""The shared training loop: learning, best-epoch checkpointing, exact resume, case safety."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from physml.training import (
    TrainConfig,
    code_version,
    fit,
    load_checkpoint,
    read_checkpoint,
    resumable,
    seed_everything,
    select_device,
)


class DictData(Dataset):
    """Noisy samples of y = sin(x) as dict items, the layout physml's datasets use."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, generator=g) * 2 * math.pi
        self.y = torch.sin(self.x) + 0.05 * torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class Noisy(nn.Module):
    """An MLP with dropout, so that training consumes the global RNG (resume must restore it)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Dropout(0.1), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build(config: dict) -> nn.Module:
    return Noisy(config["width"])


def mse(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return ((model(batch["x"]) - batch["y"]) ** 2).mean()


CFG = {"case": "toy", "model": "mlp", "width": 32}


def make(seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return build(CFG)


def test_fit_learns_and_checkpoint_round_trips(tmp_path: Path) -> None:
    train, val = DictData(256, 1), DictData(64, 2)
    config = TrainConfig(epochs=60, batch_size=32, lr=2e-2, lr_step=20, lr_gamma=0.5, device="cpu")
    model = make()
    result = fit(model, mse, train, val, config, tmp_path / "m.pt", CFG, progress=False)
    # Var(sin x) = 1/2: a model that learnt nothing has val MSE ≈ 0.5; noise floor 0.0025.
    assert result.best_val < 0.05
    assert len(result.history) == 60
    assert result.best_val == min(row["val_loss"] for row in result.history)
    assert result.history[result.best_epoch - 1]["val_loss"] == result.best_val
    assert [row["lr"] for row in result.history[::20]] == pytest.approx([2e-2, 1e-2, 5e-3])
    payload = torch.load(tmp_path / "m.pt", weights_only=True)  # only tensors and plain values inside
    assert payload["case"] == "toy" and payload["model_config"] == CFG
    loaded, loaded_cfg, extra = load_checkpoint(tmp_path / "m.pt", build, expect_case="toy")
    assert loaded_cfg == CFG and extra["best_epoch"] == result.best_epoch
    for key, value in model.state_dict().items():  # fit leaves the best weights in the model
        assert torch.equal(value, loaded.state_dict()[key])
    assert not loaded.training
    assert not list(tmp_path.glob(".*.partial"))  # atomic writes leave no temporary file


def test_the_progress_bar_names_the_network_and_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One case trains several networks (plain, softc, trained-constrained; BOON's seed studies): each bar
    names its checkpoint from the case folder on and its seed, so that a reader can tell them apart."""
    train, val = DictData(32, 1), DictData(16, 2)
    path = tmp_path / "models" / "quick" / "toy" / "mlp" / "seeds" / "3" / "softc.pt"
    path.parent.mkdir(parents=True)
    fit(make(), mse, train, val, TrainConfig(epochs=1, batch_size=16, lr=1e-3, seed=3, device="cpu"), path, CFG,
        progress=True)
    assert "train toy/mlp/seeds/3/softc seed 3" in capsys.readouterr().err
    other = tmp_path / "elsewhere.pt"
    fit(make(), mse, train, val, TrainConfig(epochs=1, batch_size=16, lr=1e-3, device="cpu"), other, CFG, progress=True)
    assert "train toy elsewhere seed 0" in capsys.readouterr().err


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path: Path) -> None:
    train, val = DictData(128, 3), DictData(32, 4)
    config = TrainConfig(epochs=6, batch_size=16, lr=5e-3, lr_step=2, seed=7, device="cpu")
    full = make()
    fit(full, mse, train, val, config, tmp_path / "full.pt", CFG, progress=False)

    calls = {"n": 0}

    def crashing(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        calls["n"] += model.training  # validation calls run in eval mode
        if calls["n"] == 8 * 3 + 5:  # 8 training batches per epoch: dies inside epoch 4
            raise KeyboardInterrupt
        return mse(model, batch)

    with pytest.raises(KeyboardInterrupt):
        fit(make(), crashing, train, val, config, tmp_path / "cut.pt", CFG, progress=False)
    assert read_checkpoint(tmp_path / "cut.pt")["resume"]["epoch"] == 3
    resumed = make(seed=123)  # different initial weights: they must be replaced by the checkpoint's
    result = fit(resumed, mse, train, val, config, tmp_path / "cut.pt", CFG, progress=False)
    assert [int(row["epoch"]) for row in result.history] == [1, 2, 3, 4, 5, 6]
    a = read_checkpoint(tmp_path / "full.pt")
    b = read_checkpoint(tmp_path / "cut.pt")
    for key in a["resume"]["model_state"]:
        assert torch.equal(a["resume"]["model_state"][key], b["resume"]["model_state"][key])
        assert torch.equal(a["model_state"][key], b["model_state"][key])
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]
    # the same file, byte for byte, so that DVC does not rerun what follows a resumed training
    assert (tmp_path / "cut.pt").read_bytes() == (tmp_path / "full.pt").read_bytes()


def test_extending_epochs_continues_and_changed_config_is_refused(tmp_path: Path) -> None:
    train, val = DictData(64, 5), DictData(16, 6)
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-3, device="cpu")
    fit(make(), mse, train, val, config, tmp_path / "m.pt", CFG, progress=False)
    longer = TrainConfig(epochs=4, batch_size=16, lr=1e-3, device="cpu")
    result = fit(make(), mse, train, val, longer, tmp_path / "m.pt", CFG, progress=False)
    assert [int(r["epoch"]) for r in result.history] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="TrainConfig"):
        fit(make(), mse, train, val, TrainConfig(epochs=4, batch_size=8, lr=1e-3, device="cpu"),
            tmp_path / "m.pt", CFG, progress=False)
    with pytest.raises(ValueError, match="model_config"):
        fit(make(), mse, train, val, longer, tmp_path / "m.pt", {**CFG, "width": 33}, progress=False)


def test_resumable_only_with_the_same_model_settings_and_data(tmp_path: Path) -> None:
    """The checkpoint records the data version it was trained on; resuming needs the same model_config,
    TrainConfig (up to more epochs) and data version; anything else (or a missing or corrupt file) is not resumable,
    and fit(resume=True) on other data stops with an error naming both versions."""
    train, val = DictData(32, 9), DictData(8, 10)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, lr_step=10, device="cpu")
    path = tmp_path / "m.pt"
    fit(make(), mse, train, val, config, path, CFG, progress=False, data_version="abc")
    assert read_checkpoint(path)["data_version"] == "abc"
    assert load_checkpoint(path, build)[2]["data_version"] == "abc"
    code = code_version(make(), mse)
    longer = TrainConfig(epochs=5, batch_size=8, lr=1e-3, lr_step=10, device="cpu")
    other_step = TrainConfig(epochs=1, batch_size=8, lr=1e-3, lr_step=5, device="cpu")
    assert resumable(path, CFG, config, "abc", code=code)
    assert resumable(path, CFG, longer, "abc", code=code)
    assert not resumable(path, CFG, other_step, "abc", code=code)
    assert not resumable(path, {**CFG, "width": 16}, config, "abc", code=code)
    assert not resumable(path, CFG, config, "abd", code=code)
    assert not resumable(path, CFG, config, code=code)
    assert not resumable(tmp_path / "none.pt", CFG, config, "abc", code=code)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert not resumable(tmp_path / "bad.pt", CFG, config, "abc", code=code)
    with pytest.raises(ValueError, match="trained on data 'abc', not 'abd'"):
        fit(make(), mse, train, val, config, path, CFG, progress=False, data_version="abd")
    # more epochs continue a run, fewer do not cut a longer one back (it would come back unchanged)
    two = TrainConfig(epochs=2, batch_size=8, lr=1e-3, lr_step=10, device="cpu")
    fit(make(), mse, train, val, two, tmp_path / "two.pt", CFG, progress=False, data_version="abc")
    assert not resumable(tmp_path / "two.pt", CFG, config, "abc", code=code)
    with pytest.raises(ValueError, match="2 epochs done, more than the 1 asked for"):
        fit(make(), mse, train, val, config, tmp_path / "two.pt", CFG, progress=False, data_version="abc")


def test_wrong_case_and_bad_inputs_are_rejected(tmp_path: Path) -> None:
    train, val = DictData(32, 7), DictData(8, 8)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, device="cpu")
    fit(make(), mse, train, val, config, tmp_path / "m.pt", CFG, progress=False)
    with pytest.raises(ValueError, match="case 'toy'"):
        load_checkpoint(tmp_path / "m.pt", build, expect_case="stefan")
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt", build)
    with pytest.raises(ValueError, match="case"):
        fit(make(), mse, train, val, config, tmp_path / "x.pt", {"width": 32}, progress=False)
    with pytest.raises(ValueError, match="json"):
        fit(make(), mse, train, val, config, tmp_path / "x.pt", {"case": "toy", "f": object()}, progress=False)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(epochs=1, batch_size=8, lr=-1.0)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0, batch_size=8, lr=1e-3)
    with pytest.raises(ValueError, match="device"):
        TrainConfig(epochs=1, batch_size=8, lr=1e-3, device="tpu")
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        TrainConfig.from_dict({"epochs": 1, "batch_size": 8, "lr": 1e-3, "momentum": 0.9})
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            select_device("cuda")


def test_diverging_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    data = TensorDataset(torch.ones(8, 1), torch.ones(8, 1))

    def nan_loss(model: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        return model(batch[0]).sum() * float("nan")

    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(make(), nan_loss, data, data, TrainConfig(epochs=1, batch_size=4, lr=1e-3, device="cpu"),
            tmp_path / "m.pt", CFG, progress=False)
    assert not (tmp_path / "m.pt").exists()


_TWO_RANKS = """
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import physml.training
from physml.training import TrainConfig, fit


class Data(torch.utils.data.Dataset):
    def __init__(self, n, nan_at=None):
        self.x = torch.linspace(0.0, 6.0, n).unsqueeze(1)
        self.y = torch.sin(self.x)
        if nan_at is not None:
            self.y[nan_at] = float("nan")
    def __len__(self):
        return len(self.x)
    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def loss(model, batch):
    return ((model(batch["x"]) - batch["y"]) ** 2).mean()


def rank_main(rank, world, out):
    dist.init_process_group("gloo", init_method=f"file://{out}/rdv", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    config = TrainConfig(epochs=3, batch_size=1, lr=1e-2, device="cpu")
    nan_at = int(sys.argv[2]) if len(sys.argv) > 2 else None  # one sample's target NaN: one rank diverges
    atomic_path = physml.training.atomic_path
    def logged(path, *args, **kwargs):  # every file fit writes, by rank
        with open(out / f"writes{rank}.txt", "a") as log:
            log.write(Path(path).name + "\\n")
        return atomic_path(path, *args, **kwargs)
    physml.training.atomic_path = logged
    try:
        fit(model, loss, Data(5, nan_at), Data(3), config, out / "m.pt", {"case": "toy"}, progress=False)
    except FloatingPointError as exc:  # recorded per rank; returning (not raising) lets mp.spawn wait for both
        (out / f"fpe{rank}.txt").write_text(str(exc))
        dist.destroy_process_group()
        return
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(rank_main, args=(2, Path(sys.argv[1])), nprocs=2)
"""


def test_two_ranks_train_equal_shards_to_equal_weights(tmp_path: Path) -> None:
    """Two gloo ranks on 5 samples with batch 1: the permutation is padded to 6, so each rank runs 3 batches
    (an uneven split used to leave one rank waiting forever at an all-reduce); gradients are averaged after
    every backward, so both replicas end with the same weights; only rank 0 writes the checkpoint."""
    import subprocess
    import sys

    script = tmp_path / "two_ranks.py"
    script.write_text(_TWO_RANKS)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert read_checkpoint(tmp_path / "m.pt")["best_epoch"] in (1, 2, 3)
    assert set((tmp_path / "writes0.txt").read_text().split()) == {"m.pt"} and not (tmp_path / "writes1.txt").exists()
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    assert not all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), first.values()))  # it trained


def test_a_rank_that_diverges_stops_every_rank(tmp_path: Path) -> None:
    """A NaN loss on one rank (its shard holds the bad sample) raised there while the other rank waited in the
    gradient all-reduce forever (or failed there when its peer left); now every rank raises FloatingPointError
    in the same step: each rank records its error and returns, so both records exist, name the same epoch and
    batch, and only one of them saw the NaN."""
    import re
    import subprocess
    import sys

    script = tmp_path / "two_ranks.py"
    script.write_text(_TWO_RANKS)
    try:
        done = subprocess.run([sys.executable, str(script), str(tmp_path), "2"], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a rank waited for the diverged one: the non-finite check is not shared between ranks")
    assert done.returncode == 0, done.stderr[-2000:]
    errors = [(tmp_path / f"fpe{r}.txt").read_text() for r in (0, 1)]
    where = [re.search(r"at epoch \d+, batch \d+", e) for e in errors]
    assert all(where) and where[0].group() == where[1].group(), errors
    assert sum("(nan on rank" in e for e in errors) == 1, errors
    assert not (tmp_path / "rank0.pt").exists() and not (tmp_path / "rank1.pt").exists()


def test_the_epoch_order_gives_every_rank_as_many_samples() -> None:
    from physml.training import _epoch_order

    for n, world in ((5, 2), (7, 3), (2, 4), (8, 4)):
        shards = [_epoch_order(n, 3, 1, rank, world) for rank in range(world)]
        assert {len(s) for s in shards} == {-(-n // world)}
        assert set().union(*shards) == set(range(n))  # every sample is seen
    assert sorted(_epoch_order(5, 3, 1, 0, 1)) == list(range(5))  # one process: the permutation itself


def test_code_version_covers_the_softc_quadrature_of_both_black_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SoftC penalty's trapezoid weights come from physml/constraints/conservation.py, which neither model
    class is defined in: an edit there changes the ANP's and the ensemble's fingerprints (modules imported
    by what the model's modules import count too)."""
    from physml.models.anp import ANP, ANPConfig
    from physml.models.ensemble import DeepEnsemble, EnsembleConfig

    anp = ANP(ANPConfig(case="heat", hidden=8, latent=8, heads=2))
    ensemble = DeepEnsemble(EnsembleConfig(case="heat", hidden=8, members=2))
    before = (code_version(anp, mse), code_version(ensemble, mse))
    read = Path.read_bytes
    edited = "physml/constraints/conservation.py"
    monkeypatch.setattr(Path, "read_bytes", lambda self: read(self) + (b"#" if self.as_posix().endswith(edited) else b""))
    after = (code_version(anp, mse), code_version(ensemble, mse))
    assert after[0] != before[0] and after[1] != before[1]


def test_code_version_does_not_depend_on_what_else_the_process_imported() -> None:
    """A package's namespace gains a submodule attribute once anything imports that submodule (importing
    physml.experiments.probconserv binds it on physml.experiments); the FNO's fingerprint with BOON's loss
    must be the same in a `physml train` process that never imports it and in the Prefect flow, which does."""
    import subprocess
    import sys

    code = (
        "from physml.models.boon import operator_loss\n"
        "from physml.models.fno import fno_1d\n"
        "from physml.training import code_version\n"
        "before = code_version(fno_1d(width=4, modes=4), operator_loss)\n"
        "import physml.experiments.boon, physml.experiments.probconserv, physml.stages, physml.report\n"
        "print(before == code_version(fno_1d(width=4, modes=4), operator_loss))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "True"


def test_a_checkpoint_of_other_code_is_not_resumed(tmp_path: Path) -> None:
    """The checkpoint records the source fingerprint of the model and loss it trained; a checkpoint written
    by other code (here: its fingerprint edited) is not resumable, and fit(resume=True) refuses it by name."""
    train, val = DictData(32, 11), DictData(8, 12)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, device="cpu")
    path = tmp_path / "m.pt"
    fit(make(), mse, train, val, config, path, CFG, progress=False)
    code = code_version(make(), mse)
    assert read_checkpoint(path)["code_version"] == code
    assert resumable(path, CFG, config, code=code)
    payload = read_checkpoint(path)
    payload["code_version"] = "0" * 64
    torch.save(payload, path)
    assert not resumable(path, CFG, config, code=code)
    with pytest.raises(ValueError, match="written by other code"):
        fit(make(), mse, train, val, config, path, CFG, progress=False)


@pytest.mark.parametrize("edited", ["physml/layers/spectral.py", "physml/layers/grid_cache.py"])
def test_code_version_covers_the_model_classes_and_what_they_import(edited: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The fingerprint follows the files a model's forward runs: BOON's adds physml/models/boon.py to the
    FNO's; an edit of the FNO's kernel module (a submodule's class) or of the grid cache it imports changes
    both FNO fingerprints and not the ANP's; another FNO of other sizes has the same code."""
    from physml.models.anp import ANP, ANPConfig
    from physml.models.boon import BOONFNO
    from physml.models.fno import fno_1d

    fno, anp = fno_1d(width=4, modes=4), ANP(ANPConfig(case="heat", hidden=8, latent=8, heads=2))
    before = {"fno": code_version(fno, mse), "boon": code_version(BOONFNO(fno), mse), "anp": code_version(anp, mse)}
    assert len(set(before.values())) == 3
    assert code_version(fno_1d(width=8, modes=2), mse) == before["fno"]
    read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read(self) + (b"#" if self.as_posix().endswith(edited) else b""))
    after = {"fno": code_version(fno, mse), "boon": code_version(BOONFNO(fno), mse), "anp": code_version(anp, mse)}
    assert after["fno"] != before["fno"] and after["boon"] != before["boon"] and after["anp"] == before["anp"]
