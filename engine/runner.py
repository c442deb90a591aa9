"""Runs the engine's units of work: a single method run, a full comparison, a base-model build and
an embedding request. The CLI, the worker and the sweeps all come through `execute`.

Base models (original, retrained oracle, the extras some methods train with, e.g. EC's auxiliary
modules: engine.methods.prepare_extras) and the reference rows' evaluation are cached by
configuration hash under $ECLAB_HOME/cache, so a second run on the same scenario reuses them.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import noise
from . import results as results_schema
from . import store
from .catalog import default_compare
from .config import METHOD_NAMES, ConfigError, RunConfig, make_config, original_key, retrain_key, stable_hash, validate
from .data.datasets import load_dataset
from .data import DataError
from .data.splits import (Splits, known_train_size, make_pool, make_splits, random_forget_count, save_splits,
                          stratified_subsample)
from .embed import embed
from .evaluate import EvalSet, avg_gap, evaluate, prepare_references
from .events import JobContext
from .methods import create_method, extra_keys, prepare_extras
from .models import create_model
from .noise import eval_key
from .training import LoopState, Plugin, pick_device, run_loop
from .unlearning import calibrated_unlearn, relearn_curve

JOB_KINDS = ("run", "compare", "base", "embed", "audit")
COMPARE_DEFAULT = default_compare()  # the catalog's in_default_compare methods


# -- specs -------------------------------------------------------------------------------------

def config_from_spec(spec: dict) -> RunConfig:
    if not isinstance(spec, dict):
        raise ConfigError("spec", "must be a JSON object")
    if "config" in spec:
        return validate(spec["config"])
    unknown = set(spec) - {"preset", "overrides", "methods"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown field in the job spec (use preset, overrides, methods)")
    return make_config(spec.get("preset", "digits"), spec.get("overrides") or {})


def parse_methods(methods) -> list[str]:
    if methods is None:
        return list(COMPARE_DEFAULT)
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHOD_NAMES]
    if bad:
        raise ConfigError("methods", f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHOD_NAMES)}")
    if not methods:
        raise ConfigError("methods", "is empty: name at least one method")
    methods = [m for m in dict.fromkeys(methods) if m != "retrain"]  # retrain is always the reference row
    if not methods:
        raise ConfigError("methods", "lists only retrain, which every comparison has as its reference row: "
                                     "add an unlearning method, e.g. --methods ec,ft")
    return methods


def prepare(kind: str, spec: dict) -> tuple[dict, str]:
    """Validate a job spec before it is queued; return (normalised spec, configuration hash)."""
    if kind not in JOB_KINDS:
        raise ConfigError("kind", f"unknown job kind {kind!r}; choose one of {', '.join(JOB_KINDS)}")
    if kind == "embed":
        job = store.check_id(str(spec.get("job", "")))
        layer = spec.get("layer")
        if not isinstance(layer, str) or not layer:
            raise ConfigError("layer", "name a supervision point, e.g. block2")
        norm = {"job": job, "layer": layer}
        return norm, stable_hash(results_schema.versioned({"kind": kind, **norm}))
    if kind == "audit":
        from .audit import prepare_audit
        return prepare_audit(spec)
    cfg = config_from_spec(spec)
    if kind == "run":  # a comparison's plug-in joins each of its methods that takes one
        cfg.check_single_run()
    check_forget_size(cfg)
    norm: dict = {"config": cfg.model_dump()}
    if kind == "compare":
        norm["methods"] = parse_methods(spec.get("methods"))
    return norm, stable_hash(results_schema.versioned({"kind": kind, **norm, "config": _hashable(cfg)}))


def check_forget_size(cfg: RunConfig) -> None:
    """Refuse (before queueing) a forget.random share that selects no sample, or every sample, of
    the training split; the worker's make_splits would only fail on it later."""
    if cfg.forget.random is None:
        return
    n = known_train_size(cfg.data.dataset, cfg.data.test_fraction, cfg.seed, cfg.data.per_class)
    if n is not None:
        try:
            random_forget_count(cfg.forget.random, n)
        except DataError as err:
            raise ConfigError("forget.random", str(err)) from None


def _hashable(cfg: RunConfig) -> dict:
    d = cfg.model_dump()
    d["data"].pop("download", None)
    return d


# -- scenario and base models --------------------------------------------------------------------

@dataclass
class Scenario:
    cfg: RunConfig
    device: torch.device
    x: torch.Tensor
    y: torch.Tensor
    splits: Splits
    num_classes: int
    class_names: list[str]
    in_channels: int
    image_size: int

    def idx(self, name: str) -> torch.Tensor:
        return torch.as_tensor(getattr(self.splits, f"{name}_idx"), dtype=torch.long, device=self.device)

    def info(self) -> dict:
        c = self.cfg
        forget = {"classes": c.forget.classes} if c.forget.classes is not None else {"random": c.forget.random}
        s = self.splits
        return {"preset": c.preset, "dataset": c.data.dataset, "arch": c.model.arch, "forget": forget,
                "forget_label": c.forget.label, "seed": c.seed, "device": str(self.device),
                **computed_with(),
                "num_classes": self.num_classes, "class_names": self.class_names,
                "n_train": len(s.train_idx), "n_test": len(s.test_idx), "n_forget": len(s.forget_idx),
                "n_retain": len(s.retain_idx)}


def load_scenario(cfg: RunConfig) -> Scenario:
    device = pick_device(cfg.device)
    train, test = load_dataset(cfg.data.dataset, cfg.data.data_dir, cfg.data.download, cfg.data.image_size,
                               seed=cfg.seed)
    pool = make_pool(train, test)
    splits = make_splits(pool.y.numpy(), len(train) if test is not None else None, pool.num_classes,
                         cfg.forget.classes, cfg.forget.random, cfg.seed, cfg.data.test_fraction,
                         per_class=cfg.data.per_class, test_per_class=cfg.data.test_per_class)
    return Scenario(cfg, device, pool.x.to(device), pool.y.to(device), splits, pool.num_classes,
                    list(pool.classes), pool.in_channels, pool.image_size)


def init_seed(cfg: RunConfig, name: str) -> int:
    """Seed of a from-scratch model's initial weights and batch order. The retrained oracle gets its
    own, as a real retraining would: a shared initialisation would credit retrain with similarity
    to the original that comes from the starting point, not from the data."""
    return cfg.seed if name == "original" else int(stable_hash({"seed": cfg.seed, "model": name}), 16) % 2**31


def new_model(sc: Scenario, seed: int | None = None) -> nn.Module:
    torch.manual_seed(sc.cfg.seed if seed is None else seed)
    m = create_model(sc.cfg.model.arch, sc.num_classes, sc.in_channels, sc.image_size, sc.cfg.model.width)
    m = m.to(sc.device)
    if sc.device.type == "cuda":
        m = m.to(memory_format=torch.channels_last)
    return m


def _train_from_scratch(sc: Scenario, train_idx: torch.Tensor, name: str, ctx: JobContext) -> nn.Module:
    t = sc.cfg.train
    seed = init_seed(sc.cfg, name)
    model = new_model(sc, seed)
    state = LoopState(model=model, x=sc.x, y=sc.y, forget_idx=train_idx[:0], retain_idx=train_idx,
                      num_classes=sc.num_classes, device=sc.device, job=ctx, augment=t.augment)
    method = create_method("retrain", sc.cfg, hp=t)
    run_loop(method, state, epochs=t.epochs, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
             schedule="cosine", seed=seed, run_name=name, plugins=[_StageProgress(name)])
    return model.eval()


class _StageProgress(Plugin):
    """A "stage" event after every epoch of a base model's training (the progress bar's stage)."""

    def __init__(self, name: str):
        self.stage = name

    def after_epoch(self, state):
        e, n = state.epoch + 1, state.epochs
        state.job.emit({"type": "stage", "stage": self.stage, "name": self.stage, "fraction": e / n,
                        "message": f"training {self.stage}: epoch {e}/{n}, loss {state.losses['loss']:.3f}"})


def computed_with() -> dict:
    """What moves the readings besides the config: torch's thread count (the order of floating-point
    sums) and the CPU kernel set it picked (AVX2, AVX512)."""
    return {"threads": torch.get_num_threads(), "cpu_kernels": torch.backends.cpu.get_cpu_capability()}


def trained_with(key: str) -> dict:
    """computed_with() of a cached base model as its meta.json recorded it ({} where it did not: a model
    cached before it was recorded, or an unreadable file)."""
    try:
        meta = store.load_json(store.cache_dir(key) / "meta.json")
    except (store.CheckpointError, OSError):
        return {}
    return {k: meta[k] for k in results_schema.COMPUTED_WITH if isinstance(meta, dict) and k in meta}


def cached_model(sc: Scenario, key: str, name: str, train_idx: torch.Tensor, ctx: JobContext) -> tuple[nn.Module, bool]:
    """The trained model for `key`, from the cache or trained now (then cached). Returns (model, hit)."""
    with store.cache_lock(key, wait=ctx.check) as folder:  # a second worker waits, then loads this one's
        path = folder / "model.safetensors"
        if path.exists():
            model = new_model(sc)
            store.load_state_strict(model, path)
            ctx.emit({"type": "stage", "stage": name, "name": name, "fraction": 1.0,
                      "message": f"{name}: cached ({key})"})
            return model.eval(), True
        ctx.emit({"type": "stage", "stage": name, "name": name, "fraction": 0.0,
                  "message": f"training {name} on {len(train_idx)} samples ({sc.cfg.train.epochs} epochs)"})
        t0 = time.perf_counter()
        model = _train_from_scratch(sc, train_idx, name, ctx)
        store.atomic_save_safetensors(path, model.state_dict(), {"key": key, "name": name})
        store.atomic_write_json(folder / "meta.json", {"name": name, "key": key, "seconds": time.perf_counter() - t0,
                                                       "config": sc.cfg.model_dump(), **computed_with()})
        return model, False


@dataclass
class Bases:
    original: nn.Module
    retrain: nn.Module | None  # None only in an audit without a retrained model
    extras: dict | None  # what some methods train with beyond the original (engine.methods.prepare_extras)
    seconds: dict
    trained_with: dict | None = None  # {"original"/"retrain": computed_with() of its training, {} if unknown}


def base_models(sc: Scenario, ctx: JobContext, methods: list[str] | None = None, plugin: bool = False) -> Bases:
    """Original, retrain and the extras the runs of `methods` (with or without the plug-in) use;
    methods None: every extra (a base job)."""
    t = time.perf_counter()
    original, _ = cached_model(sc, original_key(sc.cfg), "original", sc.idx("train"), ctx)
    t_orig = time.perf_counter() - t
    retrain, _ = cached_model(sc, retrain_key(sc.cfg), "retrain", sc.idx("retain"), ctx)
    t_re = time.perf_counter() - t - t_orig
    extras, seconds = prepare_extras(sc, original, ctx, methods, plugin)
    made = {"original": trained_with(original_key(sc.cfg)), "retrain": trained_with(retrain_key(sc.cfg))}
    return Bases(original, retrain, extras, {"original": t_orig, "retrain": t_re, **seconds}, made)


# -- evaluation set-up ---------------------------------------------------------------------------

def eval_set(sc: Scenario) -> EvalSet:
    e, s, seed = sc.cfg.eval, sc.splits, sc.cfg.seed
    labels = sc.y.cpu().numpy()
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long, device=sc.device)  # noqa: E731
    sub = lambda idx: t(stratified_subsample(idx, labels, e.max_samples, seed) if len(idx) > e.max_samples else idx)  # noqa: E731
    idx = {k: t(getattr(s, f"{k}_idx")) for k in ("forget", "retain", "test", "forget_test", "retain_test", "train")}
    cka_idx = {k: sub(getattr(s, f"{k}_idx")) for k in ("forget", "retain", "forget_test", "retain_test")}
    n_embed = e.embed_per_class * sc.num_classes
    embed_idx = t(stratified_subsample(s.train_idx, labels, n_embed, seed))
    return EvalSet(x=sc.x, y=sc.y, num_classes=sc.num_classes, points=list(sc.cfg.supervision_points), idx=idx,
                   cka_idx=cka_idx, embed_idx=embed_idx, cka_batch=e.cka_batch, probe_epochs=e.probe_epochs,
                   knn_k=e.knn_k, seed=seed, class_wise=sc.cfg.forget.classes is not None)


def _reference_rows(sc: Scenario, ev: EvalSet, bases: Bases, ctx: JobContext) -> tuple[dict, dict]:
    """Evaluate original and retrain (cached per scenario + evaluation settings)."""
    key = "refs-" + stable_hash(results_schema.versioned({"retrain": retrain_key(sc.cfg), "eval": eval_key(sc.cfg)}))
    folder = store.cache_dir(key)
    if (folder / "refs.json").exists() and (folder / "refs.npz").exists():
        try:
            rows = store.load_json(folder / "refs.json")
            arrays = store.load_npz(folder / "refs.npz")
            return rows, results_schema.unflatten_arrays(arrays, ev.points)
        except store.CheckpointError:
            pass  # rebuild below
    rows, arrays = evaluate_references(ev, {"original": bases.original, "retrain": bases.retrain}, ctx)
    store.atomic_write_json(folder / "refs.json", rows)
    store.atomic_save_npz(folder / "refs.npz", results_schema.flatten_arrays(arrays, ev.points))
    return rows, arrays


def evaluate_references(ev: EvalSet, refs: dict[str, nn.Module], ctx: JobContext) -> tuple[dict, dict]:
    """Run entries and arrays of the reference models ("original", optionally "retrain"); with no
    retrained model there is no gold standard, so Avg. Gap stays null."""
    rows, arrays = {}, {}
    for name, model in refs.items():
        ctx.emit({"type": "stage", "stage": "eval", "name": name, "fraction": 0.5, "message": f"evaluating {name}"})
        entry, arr = evaluate(model, ev, ref_names=tuple(refs))
        rows[name] = {"method": name, "label": name, "seconds": None, "params": {}, **entry}
        arrays[name] = arr
    retrain = rows.get("retrain", {}).get("metrics") or {}
    for row in rows.values():
        row["metrics"]["avg_gap"] = avg_gap(row["metrics"], retrain)
    return rows, arrays


# -- jobs ----------------------------------------------------------------------------------------

def _finish_runs(sc: Scenario, ev: EvalSet, bases: Bases, refs: dict, ref_arrays: dict,
                 results: list[tuple[str, nn.Module, dict]], run_dir: Path, ctx: JobContext, kind: str,
                 extra: dict | None = None) -> dict:
    """Evaluate unlearned models, embed, write results.json + arrays.npz + weights. Without a retrained
    model (an audit may lack one) Avg. Gap is null and CKA is measured against the original only."""
    cfg = sc.cfg
    runs = {k: copy.deepcopy(v) for k, v in refs.items()}
    arrays = dict(ref_arrays)
    epoch_feats = {}
    for i, (label, model, entry) in enumerate(results):
        ctx.check()
        if "_arrays" not in entry:  # not yet evaluated (a compare job evaluates each method as it ends)
            ctx.emit({"type": "stage", "stage": "eval", "name": label, "fraction": (i + 1) / len(results),
                      "message": f"evaluating {label}"})
            _evaluate_into(ev, model, entry, refs)
        if "_epoch_feats" in entry:
            epoch_feats[label] = entry.pop("_epoch_feats")
        arrays[label] = entry.pop("_arrays")
        runs[label] = entry
        store.atomic_save_safetensors(run_dir / results_schema.weights_file(label), model.state_dict())
    if cfg.eval.relearn:
        ctx.emit({"type": "stage", "stage": "eval", "name": "relearn", "fraction": 0.0, "message": "relearning test"})
        for label, model in [("retrain", bases.retrain), ("original", bases.original)] + [(l, m) for l, m, _ in results]:
            if model is not None:
                runs[label]["relearn"] = relearn_curve(sc, ev, model, ctx)
    flat = results_schema.flatten_arrays(arrays, ev.points)
    labels = ev.y[ev.embed_idx].cpu().numpy()
    flat[results_schema.EMBED_LABELS] = labels.astype(np.int64)
    flat[results_schema.EMBED_IS_FORGET] = np.isin(ev.embed_idx.cpu().numpy(), sc.splits.forget_idx)
    method = "umap" if cfg.eval.umap else "pca"
    ctx.emit({"type": "stage", "stage": "embed", "name": method, "fraction": 0.0, "message": f"embedding ({method.upper()})"})
    pen = {name: arr["feats"][-1] for name, arr in arrays.items()}
    for label, feats in epoch_feats.items():
        for e, f in enumerate(feats):
            pen[results_schema.epoch_umap_key(label, e + 1)] = f  # its arrays.npz key
    coords = embed(pen, method=method, seed=cfg.seed, check=ctx.check)  # cancel / SIGTERM work here too
    ctx.check()  # the last safe point: a job cancelled during the embedding writes no results
    for name, c in coords.items():
        epoch = results_schema.parse_key(name)
        flat[name if epoch is not None and epoch.kind == results_schema.EPOCH_UMAP else results_schema.umap_key(name)] = c
    results_json = {"kind": kind, "scenario": sc.info(), "layers": list(ev.points), "config": cfg.model_dump(),
                    "embedding": method, "base_seconds": bases.seconds, "base_trained_with": bases.trained_with or {},
                    **(extra or {}), "runs": runs}
    results_schema.check(results_json)  # the readers' schema: never write what they would refuse
    store.atomic_save_npz(run_dir / "arrays.npz", flat)
    save_splits(sc.splits, run_dir / "splits.npz")
    store.atomic_write_json(run_dir / "results.json", results_json)
    (run_dir / PARTIAL).unlink(missing_ok=True)  # results.json supersedes the partial results
    return results_json


PARTIAL = "partial.json"


def _evaluate_into(ev: EvalSet, model: nn.Module, entry: dict, refs: dict) -> None:
    """Evaluate an unlearned model into its run entry (arrays kept under "_arrays" for the npz) against
    the reference rows there are (an audit may lack the retrained model)."""
    ev_entry, arr = evaluate(model, ev, ref_names=tuple(refs))
    entry.update(ev_entry)
    entry["metrics"]["avg_gap"] = avg_gap(entry["metrics"], refs.get("retrain", {}).get("metrics") or {})
    entry["_arrays"] = arr


def _write_partial(run_dir: Path, sc: Scenario, ev: EvalSet, refs: dict, results: list, methods: list[str]) -> None:
    """partial.json while a comparison runs: results.json's format with "partial": true, the reference
    rows and every method evaluated so far, and the runs still "pending" (labels). Written atomically, so
    a reader sees the previous or the next state, never half of one; removed once results.json is."""
    done = {label: {k: v for k, v in entry.items() if not k.startswith("_")} for label, _, entry in results}
    store.atomic_write_json(run_dir / PARTIAL, {
        "kind": "compare", "partial": True, "scenario": sc.info(), "layers": list(ev.points),
        "config": sc.cfg.model_dump(), "runs": {**refs, **done}, "pending": [sc.cfg.label_of(m) for m in methods if sc.cfg.label_of(m) not in done]})


def _load(cfg: RunConfig, ctx: JobContext) -> Scenario:
    ctx.emit({"type": "stage", "stage": "data", "name": cfg.data.dataset, "fraction": 0.0,
              "message": f"loading {cfg.data.dataset}"})
    return load_scenario(cfg)


def run_single(cfg: RunConfig, run_dir: Path, ctx: JobContext) -> dict:
    sc = _load(cfg, ctx)
    plugin = cfg.plugin != "none"
    bases = base_models(sc, ctx, [cfg.method], plugin)
    ev = eval_set(sc)
    prepare_references(ev, {"original": bases.original, "retrain": bases.retrain})
    refs, ref_arrays = _reference_rows(sc, ev, bases, ctx)
    ctx.emit({"type": "stage", "stage": "method", "name": cfg.run_label, "fraction": 0.0, "message": f"unlearning: {cfg.run_label}"})
    model, entry = calibrated_unlearn(sc, ev, bases, cfg.method, ctx, "run", plugin=plugin, epoch_embed=True)
    band = {"retrain_band": noise.retrain_band(sc, ev, ctx)} if noise.wants_retrain_band(cfg) else None
    return _finish_runs(sc, ev, bases, refs, ref_arrays, [(entry["label"], model, entry)], run_dir, ctx, "run", band)


def run_compare(cfg: RunConfig, methods: list[str], run_dir: Path, ctx: JobContext) -> dict:
    """Every method on one scenario; a plug-in (`plugin: ec`) joins every method that takes one, as
    in a run job ('ft+ec'; EC itself runs as itself)."""
    sc = _load(cfg, ctx)
    plugin = cfg.plugin != "none"
    bases = base_models(sc, ctx, methods, plugin)
    ev = eval_set(sc)
    prepare_references(ev, {"original": bases.original, "retrain": bases.retrain})
    refs, ref_arrays = _reference_rows(sc, ev, bases, ctx)
    results = []
    _write_partial(run_dir, sc, ev, refs, results, methods)
    for i, name in enumerate(methods):
        label = cfg.label_of(name)
        ctx.emit({"type": "stage", "stage": "method", "name": label, "fraction": i / len(methods),
                  "message": f"method {i + 1} of {len(methods)}"})  # the bar names the method
        model, entry = calibrated_unlearn(sc, ev, bases, name, ctx, "compare", plugin=plugin)
        ctx.check()
        _evaluate_into(ev, model, entry, refs)
        results.append((label, model, entry))
        ctx.emit({"type": "log", "message": f"evaluated {label} ({i + 1}/{len(methods)})"})
        _write_partial(run_dir, sc, ev, refs, results, methods)
    # after the methods: the rows a user waits for come first, the noise reference after them
    return _finish_runs(sc, ev, bases, refs, ref_arrays, results, run_dir, ctx, "compare",
                        noise.noise_references(sc, ev, ctx))


def run_embed(spec: dict, run_dir: Path, ctx: JobContext) -> dict:
    """UMAP of another layer for a finished job's runs, on shared axes; writes embed__LAYER.npz."""
    source = store.run_dir(spec["job"])
    results = results_schema.load(source / "results.json")
    layer = spec["layer"]
    if layer not in results["layers"]:
        raise ConfigError("layer", f"{layer!r} is not a supervision point of that run ({', '.join(results['layers'])})")
    arrays = store.load_npz(source / "arrays.npz")
    feats = {run: arrays[results_schema.feat_key(run, layer)]
             for run in results_schema.runs_of(arrays, results_schema.FEAT, layer)}
    cfg = validate(results["config"])
    coords = embed(feats, method="umap" if cfg.eval.umap else "pca", seed=cfg.seed, check=ctx.check)
    ctx.check()
    out = {results_schema.umap_key(k): v for k, v in coords.items()}
    store.atomic_save_npz(source / results_schema.embed_file(layer), out)
    store.atomic_save_npz(run_dir / results_schema.embed_file(layer), out)
    summary = {"kind": "embed", "job": spec["job"], "layer": layer, "runs": sorted(coords)}
    store.atomic_write_json(run_dir / "embed.json", summary)
    return summary


def run_base(cfg: RunConfig, run_dir: Path, ctx: JobContext) -> dict:
    sc = _load(cfg, ctx)
    bases = base_models(sc, ctx)
    summary = {"kind": "base", "scenario": sc.info(), "seconds": bases.seconds,
               "keys": {"original": original_key(cfg), "retrain": retrain_key(cfg), **extra_keys(cfg)}}
    store.atomic_write_json(run_dir / "base.json", summary)
    return summary


def execute(kind: str, spec: dict, run_dir: Path, ctx: JobContext | None = None) -> dict:
    """Run one job in this process. Writes its artifacts into run_dir; returns a summary."""
    ctx = ctx or JobContext()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if kind == "embed":
        return run_embed(spec, run_dir, ctx)
    cfg = config_from_spec(spec)
    store.atomic_write_json(run_dir / "config.json", {"kind": kind, **spec, "config": cfg.model_dump()})
    if kind == "base":
        return run_base(cfg, run_dir, ctx)
    if kind == "run":
        res = run_single(cfg, run_dir, ctx)
    elif kind == "compare":
        res = run_compare(cfg, parse_methods(spec.get("methods")), run_dir, ctx)
    elif kind == "audit":
        from .audit import run_audit
        res = run_audit(spec, run_dir, ctx)
    else:
        raise ConfigError("kind", f"unknown job kind {kind!r}")
    return summarize(res)


SUMMARY_FIELDS = ("forget_acc", "retain_acc", "test_acc", "distance", "worst_layer", "worst_gap", "worst_z",
                  "within", "last_gap", "probe_distance", "forget_cka_mean", "seconds")


def summarize(results: dict) -> dict:
    """Headline numbers per run (engine/results.py run_summary): accuracies, THE distance to retrain
    (worst inner layer) with its parts, the per-point gaps {point: signed gap} and tolerances."""
    out = {}
    for row in results_schema.summary(results):
        out[row["name"]] = {**{k: row[k] for k in SUMMARY_FIELDS},
                            "gaps": {g["point"]: g["gap"] for g in row["gaps"]},
                            "tolerances": {g["point"]: g["tol"] for g in row["gaps"]},
                            "probe_gaps": {g["point"]: g["gap"] for g in row["probe_gaps"]},
                            "tolerance_measured": row["tolerance_measured"]}
    return {"kind": results["kind"], "runs": out}


__all__ = ["JOB_KINDS", "prepare", "execute", "config_from_spec", "parse_methods", "summarize"]
