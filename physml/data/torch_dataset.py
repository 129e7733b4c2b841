"""A torch ``Dataset`` over a generated split (opens the HDF5 file lazily, per worker process)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from physml.data.reader import SplitDataset


class TorchSplit(Dataset):
    """Item i = {key: float32 tensor of sample i} for ``keys`` (default: every per-sample array).

    The file is opened on first access in each process, so it is safe with DataLoader workers.
    """

    def __init__(self, path: str | Path, keys: list[str] | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.path = Path(path)
        with SplitDataset(self.path) as ds:
            self._len = len(ds)
            available = ds.per_sample_keys()
        unknown = [k for k in keys or [] if k not in available]
        if unknown:
            raise ValueError(f"keys {unknown} are not in {self.path.name}; available: {available}")
        self.keys = list(keys) if keys else available
        self.dtype = dtype
        self._ds: SplitDataset | None = None

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self._ds is None:
            self._ds = SplitDataset(self.path)
        return {k: torch.as_tensor(self._ds[k][i], dtype=self.dtype) for k in self.keys}
