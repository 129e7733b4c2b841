"""Datasets: generation per case and split (HDF5 + pandera-validated manifest) and lazy readers.

``generate_case(case, params, out_dir)`` writes ``<out>/<profile>/<case>/{train,val,test}.h5``;
``open_dataset(path)`` reads one split lazily. The torch adapter lives in
:mod:`physml.data.torch_dataset` (``TorchSplit``) so that importing this package does not import torch.
"""

from physml.data.generate import (
    MARKER,
    SCHEMA_VERSION,
    changed_files,
    draw_parameters,
    fingerprint,
    generate_case,
    generate_split,
    is_complete,
    missing_files,
    split_seed_sequence,
)
from physml.data.reader import SplitDataset, open_dataset, split_path
from physml.data.schema import MASS_TOLERANCE, manifest_schema, validate_manifest

__all__ = [
    "MARKER",
    "MASS_TOLERANCE",
    "SCHEMA_VERSION",
    "SplitDataset",
    "changed_files",
    "draw_parameters",
    "fingerprint",
    "generate_case",
    "generate_split",
    "is_complete",
    "manifest_schema",
    "missing_files",
    "open_dataset",
    "split_path",
    "split_seed_sequence",
    "validate_manifest",
]
