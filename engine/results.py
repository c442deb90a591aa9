"""The schema of results.json (docs/INTERFACES.md), shared by the writer (engine.runner) and every
reader (engine.jobs.load_results, so `show`, the dashboard and the embed jobs).

A results file that parses but holds the wrong types (a string where a number belongs, a list where
a mapping belongs) raises `ResultsError`, a `store.CheckpointError`, naming the file, the first bad
field and the fix, so the readers treat it like a corrupt file instead of failing later on a
type error. Types are strict (no "0.5" -> 0.5 coercion): what passes is exactly what the pages get.
Unknown fields are kept (older and newer writers add some); missing optional fields stay missing.
Pure pydantic: no torch, importable by the dashboard.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from . import store

Num = float | None  # NaN is allowed: results.json is written with allow_nan (a CKA of a dead layer)


class _Lenient(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Metrics(_Lenient):
    forget_acc: Num = None
    retain_acc: Num = None
    test_acc: Num = None
    forget_test_acc: Num = None
    retain_test_acc: Num = None
    mia_efficacy: Num = None
    knn_forget_acc: Num = None
    avg_gap: Num = None


class DecisionGrid(_Lenient):
    conf: list[Num] = []
    member: list[Num] = []


class Mia(_Lenient):
    decision_grid: DecisionGrid | None = None


class Epoch(_Lenient):
    epoch: int | None = None
    losses: dict[str, Num] = {}
    forget_acc: Num = None
    retain_acc: Num = None
    cka_forget: dict[str, Num] = {}


class Relearn(_Lenient):
    steps: list[int] = []
    forget_acc: list[Num] = []


class Run(_Lenient):
    method: str | None = None
    label: str | None = None
    seconds: Num = None
    params: dict[str, Any] = {}
    metrics: Metrics = Metrics()
    cka_vs_original: dict[str, dict[str, Num]] = {}
    cka_vs_retrain: dict[str, dict[str, Num]] = {}
    probe_forget_acc: dict[str, Num] = {}
    cka_matrix_vs_original: list[list[Num]] | None = None
    per_class_test_acc: list[Num] | None = None
    confusion_test: list[list[Num]] | None = None
    mia: Mia | None = None
    history: list[Epoch] | None = None
    relearn: Relearn | None = None


class Scenario(_Lenient):
    preset: str | None = None
    dataset: str | None = None
    arch: str | None = None
    forget: dict[str, Any] = {}
    forget_label: str | None = None
    seed: int | None = None
    device: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    n_train: int | None = None
    n_test: int | None = None
    n_forget: int | None = None
    n_retain: int | None = None


class SeedBand(_Lenient):
    """Training noise: per split and layer, the CKA to the original of a second original trained
    from another seed (runner.seed_band)."""
    seed: int | None = None
    cka_vs_original: dict[str, dict[str, Num]] = {}


class Results(_Lenient):
    kind: Literal["run", "compare", "audit"]
    scenario: Scenario = Scenario()
    layers: list[str] = []
    config: dict[str, Any] = {}
    seed_band: SeedBand | None = None
    runs: dict[str, Run]


class ResultsError(store.CheckpointError):
    """A results.json that is not valid JSON or does not match the schema."""


def problem(obj: Any) -> str | None:
    """None when `obj` matches the results schema, else one line naming the first bad field."""
    try:
        Results.model_validate(obj)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        got = first.get("input")
        shown = f" (got {type(got).__name__} {str(got)[:40]!r})" if not isinstance(got, (dict, list)) else ""
        return f"{where}: {first['msg']}{shown}"
    return None


def check(obj: Any, path: Path | str = "results.json") -> dict:
    """`obj` itself when it matches the schema, else ResultsError (file, field, fix)."""
    bad = problem(obj)
    if bad is not None:
        raise ResultsError(f"{path} is damaged ({bad}): rerun the job to write it again")
    return obj


def load(path: Path | str) -> dict:
    """Read and check a results.json; CheckpointError when missing, ResultsError when damaged."""
    try:
        obj = store.load_json(path)
    except store.CheckpointError as err:
        if not Path(path).exists():
            raise
        raise ResultsError(str(err)) from None
    return check(obj, path)
