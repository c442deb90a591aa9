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
    threads: int | None = None  # torch's CPU threads: the reduction order, so the last digits of every number
    num_classes: int | None = None
    class_names: list[str] | None = None
    n_train: int | None = None
    n_test: int | None = None
    n_forget: int | None = None
    n_retain: int | None = None


class SeedBand(_Lenient):
    """Training noise: per split and layer, the CKA to the original of a second original trained
    from another seed (engine/noise.py seed_band)."""
    seed: int | None = None
    cka_vs_original: dict[str, dict[str, Num]] = {}


class RetrainBand(_Lenient):
    """Reference noise: a second retrained model (another seed), evaluated like retrain
    (engine/noise.py retrain_band). How far it lands from the first retrain, per layer, is the tolerance of
    every gap to retrain (`tolerances`)."""
    seed: int | None = None
    metrics: Metrics = Metrics()
    cka_vs_original: dict[str, dict[str, Num]] = {}
    cka_vs_retrain: dict[str, dict[str, Num]] = {}
    probe_forget_acc: dict[str, Num] = {}


class Results(_Lenient):
    kind: Literal["run", "compare", "audit"]
    scenario: Scenario = Scenario()
    layers: list[str] = []
    config: dict[str, Any] = {}
    seed_band: SeedBand | None = None
    retrain_band: RetrainBand | None = None
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
#
# Forgetting is judged against the retrained model, layer by layer. Per supervision point a run's
# signed gap to retrain is its forget-split CKA to the original minus retrain's (> 0: it keeps more of
# the original than retraining does, superficial; < 0: it is further from the original than retraining,
# distorted), and that gap in units of the point's tolerance: how far two honest retrainings (two seeds)
# land from each other there. THE distance to retrain is the largest |gap| over the inner points, so no
# layer can hide in it; the last point (the penultimate feature, where logit-level methods act on
# purpose) is reported apart. The mean over layers is kept only as a labelled detail (forget_cka_mean).

REFERENCE = ("original", "retrain")
# the training-noise reference: a second original trained from another seed (results.json "seed_band";
# its base-model stage and checkpoint carry the same name)
NOISE_RUN = "original_seed2"
# the reference noise of retrain: a second retrained model from another seed (results.json "retrain_band")
RETRAIN_NOISE_RUN = "retrain_seed2"
# (ours) the smallest tolerance: one pair of retrainings can land at nearly the same CKA by chance, and
# the minibatch CKA estimator itself moves by about 0.005 between evaluation subsamples
TOLERANCE_FLOOR = {"cka": 0.01, "probe": 0.02}
# (ours) the tolerance where no second retrain was measured (results without retrain_band): the
# margin the verdicts used before tolerances were measured
ASSUMED_TOLERANCE = {"cka": 0.02, "probe": 0.05}
# The one rule at the logits, for every reader (the pages' verdicts, grids, bench_claims): a run
# *forgets* when its forget accuracy is within FORGET_TOL of retrain's (the sweeps' and calibration's
# feasibility rule); it *keeps retain* when its retain accuracy is at most RETAIN_TOL below the
# original's (beyond it the pages say "retain damaged").
FORGET_TOL = 0.05
RETAIN_TOL = 0.02
_AT_LIMIT = 1e-9  # a drop equal to the limit is within it (1.0 - 0.98 is 0.020000000000000018 in floats)


def forgets(forget_acc, retrain_forget_acc) -> bool | None:
    """Forget accuracy within FORGET_TOL of retrain's (either way); None where either is missing."""
    fa, rfa = num(forget_acc), num(retrain_forget_acc)
    return None if fa is None or rfa is None else abs(fa - rfa) <= FORGET_TOL + _AT_LIMIT


def keeps_retain(retain_acc, original_retain_acc) -> bool | None:
    """Retain accuracy at most RETAIN_TOL below the original's; None where either is missing."""
    ra, ora = num(retain_acc), num(original_retain_acc)
    return None if ra is None or ora is None else ora - ra <= RETAIN_TOL + _AT_LIMIT


# What moves the readings besides the config (engine.runner.computed_with records them): torch's thread
# count sets the order of floating-point sums, and so does the CPU kernel set it picked (AVX2, AVX512).
COMPUTED_WITH = ("threads", "cpu_kernels")


def computed_text(record: Mapping) -> str | None:
    """'2 torch threads, AVX512 kernels' from a COMPUTED_WITH record (the kernel set where it was
    recorded); None where the thread count was not."""
    n = (record or {}).get("threads")
    if not n:
        return None
    kernels = record.get("cpu_kernels")
    return f"{n} torch thread{'' if n == 1 else 's'}" + (f", {kernels} kernels" if kernels else "")


# what a gap kind compares, per run entry: the forget-split CKA to the original, or probe recovery
_GAP_FIELDS = {"cka": ("cka_vs_original", "forget"), "probe": ("probe_forget_acc", None)}


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
    """The mean of one run entry's finite CKA to `ref` on `split` over inner_layers(layers): with the
    defaults, forget_cka_mean (a labelled detail, never a headline: a mean lets layers cancel)."""
    return mean_over(((run or {}).get(ref) or {}).get(split), inner_layers(layers))


def per_point(entry: Mapping | None, kind: str = "cka") -> dict:
    """{point: value} of one run entry (or a retrain_band) for a gap kind ("cka" or "probe")."""
    field, split = _GAP_FIELDS[kind]
    d = (entry or {}).get(field) or {}
    if split is not None:
        d = d.get(split) or {}
    return d if isinstance(d, Mapping) else {}


def tolerances(results: Mapping, kind: str = "cka") -> tuple[dict[str, float], bool]:
    """({point: tolerance}, measured): per supervision point, how far two honest retrainings land from
    each other, |second retrain - retrain| on the gap's own quantity, at least TOLERANCE_FLOOR; where
    the results hold no second retrain (or it misses a point), ASSUMED_TOLERANCE and measured False."""
    layers = list(results.get("layers") or [])
    ret = per_point((results.get("runs") or {}).get("retrain"), kind)
    band = per_point(results.get("retrain_band"), kind)
    out, measured = {}, bool(band)
    for p in layers:
        a, b = num(ret.get(p)), num(band.get(p))
        if a is None or b is None:
            out[p], measured = ASSUMED_TOLERANCE[kind], False
        else:
            out[p] = max(TOLERANCE_FLOOR[kind], abs(b - a))
    return out, measured and bool(layers)


def layer_gaps(results: Mapping, name: str, kind: str = "cka") -> list[dict]:
    """Per supervision point of one run, against retrain: {"point", "inner", "value", "retrain", "gap"
    (signed, run minus retrain), "tol", "z" (gap / tol), "within" (|gap| <= tol)}; gap, z and within
    are None where either value is missing."""
    runs = results.get("runs") or {}
    layers = list(results.get("layers") or [])
    inner = set(inner_layers(layers))
    mine, ret = per_point(runs.get(name), kind), per_point(runs.get("retrain"), kind)
    tols, _ = tolerances(results, kind)
    out = []
    for p in layers:
        v, r = num(mine.get(p)), num(ret.get(p))
        gap = v - r if v is not None and r is not None else None
        out.append({"point": p, "inner": p in inner, "value": v, "retrain": r, "gap": gap, "tol": tols[p],
                    "z": None if gap is None else gap / tols[p],
                    "within": None if gap is None else abs(gap) <= tols[p] + 1e-12})
    return out


def distance(gaps: Sequence[Mapping]) -> dict:
    """The worst inner layer of layer_gaps: {"distance" (largest |gap| over the inner points, THE
    distance to retrain), "worst_layer", "worst_gap" (signed), "worst_z" (largest |z|), "within" (every
    inner point within its tolerance), "last_gap" (the last point's signed gap, shown apart)}. Values are
    None when no inner gap is known; worst_layer is None where every gap is 0 (retrain itself)."""
    inner = [g for g in gaps if g["inner"] and g["gap"] is not None]
    last = gaps[-1] if gaps and not gaps[-1]["inner"] else None
    if not inner:
        return {"distance": None, "worst_layer": None, "worst_gap": None, "worst_z": None, "within": None,
                "last_gap": last["gap"] if last else None}
    worst = max(inner, key=lambda g: abs(g["gap"]))
    return {"distance": abs(worst["gap"]), "worst_layer": worst["point"] if worst["gap"] else None,
            "worst_gap": worst["gap"],
            "worst_z": max(abs(g["z"]) for g in inner), "within": all(g["within"] for g in inner),
            "last_gap": last["gap"] if last else None}


def run_names(results: Mapping) -> list[str]:
    """original, retrain, then the methods in stored order."""
    runs = list((results or {}).get("runs") or {})
    return [n for n in REFERENCE if n in runs] + [n for n in runs if n not in REFERENCE]


def run_summary(results: Mapping, name: str) -> dict:
    """The headline numbers of one run: logit-level next to representation-level forgetting, read
    against retrain layer by layer. `distance` is THE distance to retrain (the largest inner-layer
    |gap| of the forget CKA to the original, `distance`), with worst_layer / worst_gap / worst_z /
    within / last_gap; `gaps` holds layer_gaps; probe_distance / probe_gaps the same for linear-probe
    recovery. forget_cka_mean (the mean inner forget CKA) and probe_mean are labelled details. Every
    number is a finite float or None."""
    run = (results.get("runs") or {}).get(name) or {}
    layers = results.get("layers") or []
    inner = inner_layers(layers)
    m = run.get("metrics") or {}
    probe = run.get("probe_forget_acc")
    gaps, probe_gaps = layer_gaps(results, name), layer_gaps(results, name, "probe")
    probe_worst = distance(probe_gaps)
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
        **distance(gaps),
        "gaps": gaps,
        "tolerance_measured": tolerances(results)[1],
        "probe_distance": probe_worst["distance"],
        "probe_worst_gap": probe_worst["worst_gap"],
        "probe_gaps": probe_gaps,
        "forget_cka_mean": inner_cka(run, layers),
        "probe_mean": mean_over(probe, inner),
        "probe_max": max((v for v in (num((probe or {}).get(k)) for k in inner) if v is not None), default=None),
        "seconds": num(run.get("seconds")),
    }


def summary(results: Mapping) -> list[dict]:
    """run_summary of every run: original, retrain (distance 0 by definition), then the methods."""
    return [run_summary(results, n) for n in run_names(results)]


def gaps_text(gaps: Sequence[Mapping], digits: int = 3) -> str:
    """'block1 +0.028, block2 +0.062, block3 -0.091 | block4 -0.427': the signed gaps to retrain per
    point, the last point after a bar (logit-level methods change it on purpose)."""
    def one(g):
        return f"{g['point']} " + ("n/a" if g["gap"] is None else f"{g['gap']:+.{digits}f}")
    inner = [one(g) for g in gaps if g["inner"]]
    rest = [one(g) for g in gaps if not g["inner"]]
    return ", ".join(inner) + (" | " + ", ".join(rest) if rest and inner else ", ".join(rest))


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
