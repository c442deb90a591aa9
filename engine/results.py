"""The one home of the results format (docs/INTERFACES.md): the schema of results.json, shared by
the writer (engine.runner) and every reader (engine.jobs.load_results, so `show`, the dashboard and
the embed jobs); SCHEMA_VERSION, which every results cache key carries; the key names of arrays.npz
(builders and parsers); the one headline (`summary`: the inner forget CKA and the rest of a run's
numbers) and the one Pareto front (`pareto`).

A results file that parses but holds the wrong types (a string where a number belongs, a list where
a mapping belongs) raises `ResultsError`, a `store.CheckpointError`, naming the file, the first bad
field and the fix, so the readers treat it like a corrupt file instead of failing later on a
type error. Types are strict (no "0.5" -> 0.5 coercion): what passes is exactly what the pages get.
Unknown fields are kept (older and newer writers add some); missing optional fields stay missing.
Pure pydantic: no torch, importable by the dashboard.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

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


# -- version -------------------------------------------------------------------------------------

# Bump when what a results file (or a cached reference row) holds changes, e.g. a new metric: every
# results cache key carries it (`versioned`), so rows cached under an older format are rebuilt
# instead of coming back without the new field.
SCHEMA_VERSION = 1


def versioned(key: Mapping) -> dict:
    """A results cache key's contents with SCHEMA_VERSION in them (hash the returned dict)."""
    return {**key, "results_schema": SCHEMA_VERSION}


# -- arrays.npz key names -------------------------------------------------------------------------
# arrays.npz (and the cached refs.npz) holds, per run name and "__"-separated:
#   feat__RUN__POINT       pooled features of the embedding sample at a supervision point
#   conf__RUN__SPLIT       softmax confidence of the true class on forget / retain / test
#   umap__RUN              2-D embedding of the penultimate features (shared axes)
#   epoch_umap__RUN__E     the same for a single run after unlearning epoch E (1-based)
#   embed_labels, embed_is_forget   the embedding sample's labels and forget mask
# embed__LAYER.npz (an embed job) holds umap__RUN at another layer. Run names never hold "__"
# (engine.audit refuses such names).

SEP = "__"
FEAT, CONF, UMAP, EPOCH_UMAP = "feat", "conf", "umap", "epoch_umap"
CONF_SPLITS = ("forget", "retain", "test")
EMBED_LABELS, EMBED_IS_FORGET = "embed_labels", "embed_is_forget"
ARRAYS_FILE = "arrays.npz"


class ArrayKey(NamedTuple):
    kind: str  # FEAT | CONF | UMAP | EPOCH_UMAP
    run: str
    part: str | int | None = None  # the point (FEAT), split (CONF), epoch (EPOCH_UMAP, an int), None (UMAP)


def feat_key(run: str, point: str) -> str:
    return f"{FEAT}{SEP}{run}{SEP}{point}"


def conf_key(run: str, split: str) -> str:
    return f"{CONF}{SEP}{run}{SEP}{split}"


def umap_key(run: str) -> str:
    return f"{UMAP}{SEP}{run}"


def epoch_umap_key(run: str, epoch: int) -> str:
    return f"{EPOCH_UMAP}{SEP}{run}{SEP}{int(epoch)}"


def embed_file(layer: str) -> str:
    """The file an embed job writes: UMAP of `layer` (keys umap_key(run))."""
    return f"embed{SEP}{layer}.npz"


def weights_file(run: str) -> str:
    """A run's unlearned weights in the run folder ('+' is not kept in file names)."""
    return f"weights{SEP}{run.replace('+', '_')}.safetensors"


def parse_key(key: str) -> ArrayKey | None:
    """The parts of an arrays.npz key; None for a key that is none of the per-run kinds."""
    kind, sep, rest = str(key).partition(SEP)
    if not sep or not rest:
        return None
    if kind == UMAP:
        return ArrayKey(UMAP, rest)
    run, sep, part = rest.rpartition(SEP)
    if not sep or not run or not part:
        return None
    if kind in (FEAT, CONF):
        return ArrayKey(kind, run, part)
    if kind == EPOCH_UMAP and part.isdigit():
        return ArrayKey(EPOCH_UMAP, run, int(part))
    return None


def runs_of(keys, kind: str, part=None) -> list[str]:
    """The run names with a key of `kind` (and `part`, when given) among `keys`, in key order."""
    seen = {}
    for k in keys:
        p = parse_key(k)
        if p is not None and p.kind == kind and (part is None or p.part == part):
            seen.setdefault(p.run, None)
    return list(seen)


def epochs_of(keys, run: str) -> list[int]:
    """The epochs with an epoch_umap key of `run`, ascending."""
    return sorted(p.part for p in map(parse_key, keys) if p is not None and p.kind == EPOCH_UMAP and p.run == run)


def flatten_arrays(arrays: Mapping, points: Sequence[str]) -> dict:
    """{run: {"feats": [per point], "conf": {split: ..}}} -> the flat feat__ / conf__ keys."""
    out = {}
    for name, arr in arrays.items():
        for p, f in zip(points, arr["feats"]):
            out[feat_key(name, p)] = f
        for split, c in arr["conf"].items():
            out[conf_key(name, split)] = c
    return out


def unflatten_arrays(flat: Mapping, points: Sequence[str]) -> dict:
    """The inverse of flatten_arrays, for the runs with features."""
    return {n: {"feats": [flat[feat_key(n, p)] for p in points],
                "conf": {s: flat[conf_key(n, s)] for s in CONF_SPLITS}} for n in runs_of(flat, FEAT)}


# -- the headline ---------------------------------------------------------------------------------

REFERENCE = ("original", "retrain")
# the training-noise reference: a second original trained from another seed (results.json "seed_band";
# its base-model stage and checkpoint carry the same name)
NOISE_RUN = "original_seed2"


def num(v) -> float | None:
    """A finite float or None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def mean_over(values: Mapping | None, keys: Sequence[str]) -> float | None:
    """The mean of the finite values[k] for k in keys; None when there is none."""
    vals = [num((values or {}).get(k)) for k in keys]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def inner_layers(points: Sequence[str]) -> list[str]:
    """The intermediate supervision points: all but the last (the penultimate feature, where the
    model's head sits). With a single point, that point."""
    points = list(points or [])
    return points[:-1] if len(points) > 1 else points


def inner_cka(run: Mapping, layers: Sequence[str], split: str = "forget", ref: str = "cka_vs_original") -> float | None:
    """THE inner CKA of one run entry: the mean of its finite CKA to `ref` on `split` over
    inner_layers(layers); with the defaults, the inner forget CKA (the headline's cka_mid)."""
    return mean_over(((run or {}).get(ref) or {}).get(split), inner_layers(layers))


def run_names(results: Mapping) -> list[str]:
    """original, retrain, then the methods in stored order."""
    runs = list((results or {}).get("runs") or {})
    return [n for n in REFERENCE if n in runs] + [n for n in runs if n not in REFERENCE]


def run_summary(results: Mapping, name: str) -> dict:
    """The headline numbers of one run: logit-level next to representation-level forgetting.
    cka_mid is THE inner forget CKA: the mean forget-split CKA to the original over inner_layers
    (`show`'s inner_forget_cka, the sweep's forget_cka); mia is the metrics' mia_efficacy. Every value
    is a finite float or None."""
    run = (results.get("runs") or {}).get(name) or {}
    layers = results.get("layers") or []
    inner = inner_layers(layers)
    m = run.get("metrics") or {}
    probe = run.get("probe_forget_acc")
    return {
        "name": name,
        "method": run.get("method", name),
        "role": "reference" if name in REFERENCE else "method",
        "forget_acc": num(m.get("forget_acc")),
        "retain_acc": num(m.get("retain_acc")),
        "test_acc": num(m.get("test_acc")),
        "forget_test_acc": num(m.get("forget_test_acc")),
        "mia": num(m.get("mia_efficacy")),
        "avg_gap": num(m.get("avg_gap")),
        "cka_mid": inner_cka(run, layers),
        "cka_mid_retrain": inner_cka(run, layers, ref="cka_vs_retrain"),
        "probe_mid": mean_over(probe, inner),
        "probe_max": max((v for v in (num((probe or {}).get(k)) for k in inner) if v is not None), default=None),
        "seconds": num(run.get("seconds")),
    }


def summary(results: Mapping) -> list[dict]:
    """run_summary of every run (original, retrain, then the methods), each with cka_excess: its
    inner forget CKA minus retrain's (None without retrain)."""
    rows = [run_summary(results, n) for n in run_names(results)]
    ref = next((r for r in rows if r["name"] == "retrain"), None)
    for r in rows:
        r["cka_excess"] = (r["cka_mid"] - ref["cka_mid"]) if (ref and r["cka_mid"] is not None
                                                              and ref["cka_mid"] is not None) else None
    return rows


# -- the Pareto front -----------------------------------------------------------------------------

def pareto(points: Sequence[Sequence[Any]], senses: Sequence[str] = ("min", "max"),
           feasible: Sequence[Any] | None = None) -> list[bool]:
    """Per point: whether it is on the Pareto front. points[i] holds one value per objective,
    senses[k] says whether objective k is "min"imised or "max"imised.

    A point with a missing coordinate (None, NaN, not a number) is on no front and dominates none.
    With `feasible` (a truth value per point): when any complete point is feasible only the feasible
    ones compete (the others are off the front); when none is, all do. A point is dominated when
    another is at least as good in every objective and strictly better in one; exact duplicates are
    both kept."""
    sign = [1.0 if s == "min" else -1.0 if s == "max" else None for s in senses]
    if None in sign:
        raise ValueError(f"senses are 'min' or 'max', got {list(senses)}")
    pts = {}
    for i, p in enumerate(points):
        vals = [num(v) for v in p]
        if len(vals) == len(sign) and None not in vals:
            pts[i] = [s * v for s, v in zip(sign, vals)]  # every objective minimised
    if feasible is not None and any(feasible[i] for i in pts):
        pts = {i: v for i, v in pts.items() if feasible[i]}
    out = []
    for i in range(len(points)):
        if i not in pts:
            out.append(False)
            continue
        a = pts[i]
        out.append(not any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a))
                           for j, b in pts.items() if j != i))
    return out
