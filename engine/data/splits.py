"""Train/test and forget/retain splits.

All indices point into one POOL: the training set followed by the official test set (so index
i >= len(train) is a test sample). Data sets without an official test split use the training set
as the pool and a stratified, seeded train/test split.

The train/test split depends only on (labels, seed, test_fraction, per_class, test_per_class), never
on the forget request, so original models trained on one seed can be shared by every forget request
of that seed. `per_class` / `test_per_class` (data.per_class, data.test_per_class) keep a stratified,
seeded subset of at most that many samples of each class in the training / test split, so a large
data set fits a CPU budget; the subset is what the split file records. The random forget draw and
the two subsets use separate random streams derived from the same seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from engine import store
from engine.data import DataError
from engine.data.datasets import ArrayDataset

_FIELDS = ("train_idx", "test_idx", "forget_idx", "retain_idx", "forget_test_idx", "retain_test_idx")


@dataclass
class Splits:
    """Sorted int64 index arrays into the pool (see module docstring)."""

    train_idx: np.ndarray
    test_idx: np.ndarray
    forget_idx: np.ndarray  # training samples to forget
    retain_idx: np.ndarray  # the other training samples
    forget_test_idx: np.ndarray  # test samples of the forgotten classes (empty in random mode)
    retain_test_idx: np.ndarray  # test samples of the other classes (all test samples in random mode)

    def sizes(self) -> dict[str, int]:
        return {f.name: int(len(getattr(self, f.name))) for f in fields(self)}


def make_pool(train: ArrayDataset, test: ArrayDataset | None) -> ArrayDataset:
    """Train followed by test (or train itself when there is no official test set)."""
    if test is None:
        return train
    if list(train.classes) != list(test.classes):
        raise DataError("train and test sets have different class lists: load both from the same data set")
    if tuple(train.x.shape[1:]) != tuple(test.x.shape[1:]):
        raise DataError(
            f"train images {tuple(train.x.shape[1:])} and test images {tuple(test.x.shape[1:])} differ in shape: "
            f"load both with the same image_size"
        )
    return ArrayDataset(
        torch.cat([train.x, test.x]), torch.cat([train.y, test.y]), list(train.classes), train.mean, train.std
    )


def _sorted(a) -> np.ndarray:
    return np.sort(np.asarray(a, dtype=np.int64))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _range_text(num_classes: int) -> str:
    return f"0..{num_classes - 1}"


def make_splits(
    labels_pool: np.ndarray,
    n_train_official: int | None,
    num_classes: int,
    forget_classes: list[int] | None,
    forget_random: float | None,
    seed: int,
    test_fraction: float = 0.25,
    per_class: int | None = None,
    test_per_class: int | None = None,
) -> Splits:
    """Deterministic train/test + forget/retain split (see module docstring).

    n_train_official: number of training samples at the start of the pool, or None when the data
    set has no official test split (then a stratified split by seed with `test_fraction`).
    Exactly one of forget_classes (class-wise forgetting) / forget_random (share of training
    samples, 0 < share < 1) must be given. per_class / test_per_class: keep at most that many samples
    of each class in the training / test split (None: all).
    """
    labels = np.asarray(labels_pool)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise DataError("labels_pool must be a 1-d array of integer labels: pass pool.y.numpy()")
    labels = labels.astype(np.int64, copy=False)
    n = len(labels)
    if not _is_int(num_classes) or num_classes < 1:
        raise DataError(f"num_classes must be a positive integer, got {num_classes!r}: pass the data set's num_classes")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"labels in the pool lie outside {_range_text(num_classes)}: pass the data set's num_classes "
            f"(at least {int(labels.max()) + 1})"
        )
    if not _is_int(seed) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}: e.g. seed=0")

    # --- forget request validation (before any work) ----------------------------------------
    if (forget_classes is None) == (forget_random is None):
        raise DataError(
            "give exactly one of forget.classes (class-wise forgetting) or forget.random (a share of training "
            "samples): e.g. forget.classes=[3] or forget.random=0.1"
        )
    if forget_classes is not None:
        fc = list(forget_classes)
        if not fc:
            raise DataError("forget.classes is empty: name at least one class to forget, e.g. [3]")
        bad_type = [c for c in fc if not _is_int(c)]
        if bad_type:
            raise DataError(f"forget.classes {bad_type} are not integer class ids: use ids in {_range_text(num_classes)}")
        fc = [int(c) for c in fc]
        bad = sorted({c for c in fc if c < 0 or c >= num_classes})
        if bad:
            raise DataError(
                f"forget.classes {bad} do not exist: this data set has classes {_range_text(num_classes)}; "
                f"choose class ids from that range"
            )
        dups = sorted({c for c in fc if fc.count(c) > 1})
        if dups:
            raise DataError(f"forget.classes lists {dups} more than once: name each class once")
        if len(set(fc)) >= num_classes:
            raise DataError(
                f"forget.classes would forget every class ({_range_text(num_classes)}): nothing would be left to "
                f"retain; keep at least one class out of the list"
            )
    else:
        fr = forget_random
        if isinstance(fr, bool) or not isinstance(fr, (int, float, np.floating, np.integer)) or not (0.0 < float(fr) < 1.0):
            raise DataError(f"forget.random must be a share strictly between 0 and 1, got {fr!r}: e.g. 0.1")
        fr = float(fr)
    tf = test_fraction
    if isinstance(tf, bool) or not isinstance(tf, (int, float, np.floating, np.integer)) or not (0.0 < float(tf) < 1.0):
        raise DataError(f"data.test_fraction must be strictly between 0 and 1, got {tf!r}: e.g. 0.25")
    tf = float(tf)

    # --- train/test (independent of the forget request) ---------------------------------------
    if n_train_official is None:
        train_idx, test_idx = _stratified_train_test(labels, tf, seed)
    else:
        if not _is_int(n_train_official) or not (0 < n_train_official <= n):
            raise DataError(
                f"n_train_official={n_train_official!r} must be between 1 and the pool size {n}: pass len(train)"
            )
        train_idx = np.arange(int(n_train_official), dtype=np.int64)
        test_idx = np.arange(int(n_train_official), n, dtype=np.int64)
    train_idx = per_class_subset(train_idx, labels, per_class, seed, stream=2)
    test_idx = per_class_subset(test_idx, labels, test_per_class, seed, stream=3)
    if len(train_idx) == 0:
        raise DataError("the training split is empty: use a data set with more samples or a smaller test_fraction")

    # --- forget/retain --------------------------------------------------------------------------
    if forget_classes is not None:
        fset = np.asarray(sorted(set(fc)), dtype=np.int64)
        in_forget = np.isin(labels, fset)
        forget_idx = train_idx[in_forget[train_idx]]
        retain_idx = train_idx[~in_forget[train_idx]]
        forget_test_idx = test_idx[in_forget[test_idx]]
        retain_test_idx = test_idx[~in_forget[test_idx]]
        if len(forget_idx) == 0:
            raise DataError(
                f"forget.classes {sorted(set(fc))} have no training samples in this split, so the forget set is "
                f"empty: choose classes that occur in the training data"
            )
        if len(retain_idx) == 0:
            raise DataError(
                f"forgetting classes {sorted(set(fc))} leaves no training samples to retain: forget fewer classes"
            )
    else:
        rng = np.random.Generator(np.random.PCG64([seed, 1]))  # stream separate from the train/test split
        k = random_forget_count(fr, len(train_idx))
        forget_idx = _sorted(rng.choice(train_idx, size=k, replace=False))
        retain_idx = np.setdiff1d(train_idx, forget_idx, assume_unique=True).astype(np.int64)
        forget_test_idx = np.zeros(0, dtype=np.int64)
        retain_test_idx = test_idx.copy()

    return Splits(
        train_idx=_sorted(train_idx),
        test_idx=_sorted(test_idx),
        forget_idx=_sorted(forget_idx),
        retain_idx=_sorted(retain_idx),
        forget_test_idx=_sorted(forget_test_idx),
        retain_test_idx=_sorted(retain_test_idx),
    )


def random_forget_count(share: float, n_train: int) -> int:
    """How many of `n_train` training samples forget.random=share selects; DataError when that is
    none or all of them (checked at submit too, see engine.runner.check_forget_size)."""
    k = int(round(share * n_train))
    if k == 0:
        raise DataError(
            f"forget.random={share} selects 0 of {n_train} training samples, so the forget set is empty: "
            f"raise forget.random to at least {1.0 / n_train:.3g}"
        )
    if k >= n_train:
        raise DataError(
            f"forget.random={share} selects all {n_train} training samples, leaving nothing to retain: "
            f"lower forget.random"
        )
    return k


def per_class_subset(idx: np.ndarray, labels: np.ndarray, per_class: int | None, seed: int, stream: int) -> np.ndarray:
    """At most `per_class` of `idx` from each class (all of a smaller class), drawn with the seed's
    stream `stream`; sorted. None: `idx` unchanged."""
    if per_class is None:
        return idx
    if not _is_int(per_class) or per_class < 1:
        raise DataError(f"data.per_class / data.test_per_class must be an integer >= 1, got {per_class!r}")
    rng = np.random.Generator(np.random.PCG64([int(seed), stream]))
    lab = labels[idx]
    keep = [rng.choice(idx[lab == c], size=min(int(per_class), int((lab == c).sum())), replace=False)
            for c in np.unique(lab)]  # sorted classes: a fixed draw order
    return _sorted(np.concatenate(keep)) if keep else idx[:0]


def known_train_size(dataset: str, test_fraction: float, seed: int, per_class: int | None = None) -> int | None:
    """The training split's size before any image is loaded (for checks at submit): the family's
    official size (engine/catalog.py; with per_class, that many per class, exact whenever every
    class has at least per_class samples), or, for a built-in family split by seed, counted from its
    labels; None where only the files tell (an image folder)."""
    from engine.catalog import ALL_DATASETS

    info = ALL_DATASETS.get(dataset)
    if info is None:
        return None
    if info.train_size is not None:
        n = info.train_size
        return min(n, per_class * info.num_classes) if per_class and info.num_classes else n
    if info.builtin:  # split by seed: the labels alone give the exact size
        from engine.data.datasets import load_dataset
        train, _ = load_dataset(dataset, seed=seed)
        labels = train.y.numpy()
        idx = _stratified_train_test(labels, float(test_fraction), int(seed))[0]
        return len(per_class_subset(idx, labels, per_class, int(seed), stream=2))
    return None


def _stratified_train_test(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: shuffle with the seed, put round(n_c * test_fraction) in test (at least one in each
    split when the class has two or more samples; a lone sample stays in train)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    train, test = [], []
    for c in np.unique(labels):  # sorted, so the draw order is fixed
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_c = len(idx)
        k = int(round(n_c * test_fraction))
        if n_c >= 2:
            k = min(max(k, 1), n_c - 1)
        else:
            k = 0
        test.append(idx[:k])
        train.append(idx[k:])
    if not train:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _sorted(np.concatenate(train)), _sorted(np.concatenate(test))


# ----------------------------------------------------------------------------- persistence


def save_splits(splits: Splits, path: str | os.PathLike) -> None:
    """Write the six index arrays to `path` (.npz; the name is kept as given) with the store's atomic
    writer: a unique temporary name (two writers never share one), fsync, then rename."""
    arrays = {name: np.asarray(getattr(splits, name), dtype=np.int64) for name in _FIELDS}
    store.atomic_save_npz(Path(path), arrays)


def load_splits(path: str | os.PathLike) -> Splits:
    """Read a file written by `save_splits`; DataError naming the path when it is missing or corrupt."""
    path = Path(path)
    fix = "delete it and run again to recreate the split"
    if not path.is_file():
        raise DataError(f"split file {path} does not exist: run again to create it (or check the path)")
    try:
        # open the file ourselves: np.load leaks its handle when the zip directory is unreadable
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise DataError(f"split file {path} is a single array, not the .npz archive save_splits writes: {fix}")
            with z:
                keys = set(z.files)
                if keys != set(_FIELDS):
                    raise DataError(
                        f"split file {path} has entries {sorted(keys)} instead of {list(_FIELDS)}: it is corrupt or "
                        f"from another tool; {fix}"
                    )
                arrays = {k: z[k] for k in _FIELDS}
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - BadZipFile, ValueError (pickled objects), OSError, EOFError...
        raise DataError(f"split file {path} is corrupt ({type(e).__name__}: {e}): {fix}") from e
    for k, a in arrays.items():
        if a.dtype != np.int64 or a.ndim != 1:
            raise DataError(f"split file {path}: '{k}' is {a.dtype} with shape {a.shape}, expected 1-d int64: {fix}")
        if a.size and (a.min() < 0 or np.any(np.diff(a) <= 0)):
            raise DataError(f"split file {path}: '{k}' is not a sorted list of distinct indices >= 0: {fix}")
    return Splits(**arrays)


# ----------------------------------------------------------------------------- subsets


def stratified_subsample(idx, labels_pool: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted subset of at most n of `idx`, balanced across the labels present.

    Each label gets an equal share; labels with fewer samples than their share give the rest to
    the others. Deterministic for a given seed.
    """
    idx = np.unique(np.asarray(idx, dtype=np.int64))  # sorted, distinct
    if not _is_int(n) or n < 0:
        raise DataError(f"subsample size must be an integer >= 0, got {n!r}")
    if len(idx) <= n:
        return idx
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    labels = np.asarray(labels_pool)[idx]
    classes, counts = np.unique(labels, return_counts=True)
    order = np.lexsort((classes, counts))  # smallest classes first, ties by label
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    remaining, picked = int(n), []
    for j, o in enumerate(order):
        share = remaining // (len(order) - j)
        take = min(int(counts[o]), share)
        members = idx[labels == classes[o]]
        if take:
            picked.append(rng.choice(members, size=take, replace=False))
        remaining -= take
    return _sorted(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
