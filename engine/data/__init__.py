"""Data sets and forget/retain splits for EC Lab.

Every user-facing data problem raises `DataError` (a `ValueError`) whose message names the
problem and the fix.
"""


class DataError(ValueError):
    """A data problem the user can fix (missing files, bad forget request, corrupt split file)."""


from engine.data.datasets import DATASETS, ArrayDataset, default_data_dir, load_dataset  # noqa: E402
from engine.data.splits import (  # noqa: E402
    Splits,
    load_splits,
    make_pool,
    make_splits,
    save_splits,
    stratified_subsample,
)

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DataError",
    "Splits",
    "default_data_dir",
    "load_dataset",
    "load_splits",
    "make_pool",
    "make_splits",
    "save_splits",
    "stratified_subsample",
]
