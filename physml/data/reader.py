"""Lazy access to a generated split: arrays stay on disk until indexed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd


class SplitDataset:
    """One complete split (``<split>.h5`` with its ``<split>.manifest.csv``), read lazily.

    ``ds["target_u"]`` is the on-disk ``h5py.Dataset`` (slice it to load), ``ds.sample(i)`` one sample's
    arrays as numpy, ``ds.manifest`` the manifest table (validated against its schema before the split was written), ``ds.attrs`` the file attributes.
    Raises ValueError for a split whose manifest has not landed (an interrupted generation).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"dataset file {str(self.path)!r} does not exist")
        self.manifest_path = self.path.with_name(self.path.stem + ".manifest.csv")
        if not self.manifest_path.is_file():
            raise ValueError(f"dataset {str(self.path)!r} is incomplete: its manifest {self.manifest_path.name} is missing")
        self._fh: h5py.File | None = h5py.File(self.path, "r")
        self._manifest: pd.DataFrame | None = None

    @property
    def file(self) -> h5py.File:
        if self._fh is None:
            raise ValueError(f"dataset {str(self.path)!r} is closed")
        return self._fh

    @property
    def attrs(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.file.attrs.items()}

    @property
    def parameter_names(self) -> list[str]:
        return [str(v) for v in self.file.attrs["parameter_names"]]

    @property
    def manifest(self) -> pd.DataFrame:
        if self._manifest is None:
            df = pd.read_csv(self.manifest_path, dtype={"u_shape": str})
            floats = [c for c in df.columns if c not in ("index", "finite", "u_shape")]
            self._manifest = df.astype({c: float for c in floats})
        return self._manifest

    def keys(self) -> list[str]:
        return list(self.file.keys())

    def per_sample_keys(self) -> list[str]:
        """Arrays with one entry per sample (leading axis N); excludes shared grids like ``x``, ``t``."""
        n = len(self)
        return [k for k in self.keys() if self.file[k].ndim >= 1 and self.file[k].shape[0] == n and k not in ("x", "t")]

    def __getitem__(self, name: str) -> h5py.Dataset:
        return self.file[name]

    def __len__(self) -> int:
        return int(self.file["params"].shape[0])

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Arrays of sample ``i`` (without the leading N axis)."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample index {i} out of range [0, {len(self)})")
        return {k: self.file[k][i] for k in self.per_sample_keys()}

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> SplitDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(path: str | Path) -> SplitDataset:
    """Open a generated split lazily: ``path`` is ``<out>/<profile>/<case>/<split>.h5``."""
    return SplitDataset(path)


def split_path(out_dir: str | Path, profile: str, case: str, split: str) -> Path:
    """``<out>/<profile>/<case>/<split>.h5``."""
    return Path(out_dir) / profile / case / f"{split}.h5"
