"""The noise references of a comparison: a second original (seed_band: what reseeding alone does to
the CKA to the original) and a second retrained model (retrain_band: how far two honest retrainings
land from each other, the tolerance of every gap to retrain, engine/results.py). Both are trained
from another seed through the runner's model cache; the evaluated rows are cached as well."""
from __future__ import annotations

import contextlib

from . import calibrate, store
from . import results as results_schema
from .config import RunConfig, second_original_key, second_retrain_key, stable_hash
from .evaluate import EvalSet, cka_per_layer, evaluate, grams
from .events import JobContext


def _runner():
    from . import runner  # the model cache and seeds live there; imported at call time (runner imports this)
    return runner


SECOND_ORIGINAL = results_schema.NOISE_RUN


def wants_seed_band(cfg: RunConfig) -> bool:
    return cfg.eval.seed_band == "on" or (cfg.eval.seed_band == "auto" and cfg.preset in calibrate.AUTO_PRESETS)


def seed_band(sc, ev: EvalSet, ctx: JobContext) -> dict:
    """Training noise per layer: the CKA to the original of a second original, trained on the same data
    from another seed. A run's CKA difference smaller than what reseeding alone changes (1 - this) is
    not evidence of anything; retrain's distance from the original means something only below it."""
    model, _ = _runner().cached_model(sc, second_original_key(sc.cfg), SECOND_ORIGINAL, sc.idx("train"), ctx)
    ctx.emit({"type": "stage", "stage": SECOND_ORIGINAL, "name": SECOND_ORIGINAL, "fraction": 1.0,
              "message": "measuring the training-noise band (CKA of the two originals)"})
    band = {split: cka_per_layer(grams(model, ev, split), ev.ref_grams[("original", split)], ev.points)
            for split in ("forget", "retain") if ("original", split) in ev.ref_grams}
    return {"seed": _runner().init_seed(sc.cfg, SECOND_ORIGINAL), "cka_vs_original": band}


SECOND_RETRAIN = results_schema.RETRAIN_NOISE_RUN


def wants_retrain_band(cfg: RunConfig) -> bool:
    return cfg.eval.retrain_band == "on" or (cfg.eval.retrain_band == "auto" and cfg.preset in calibrate.AUTO_PRESETS)


def retrain_band(sc, ev: EvalSet, ctx: JobContext) -> dict:
    """Reference noise: a second retrained model (another seed), evaluated like retrain. Its distance
    from the first retrain per layer is the tolerance of every gap to retrain (results.tolerances).
    Model and row are cached per scenario and evaluation settings, so a sweep pays for it once."""
    key = "refs2-" + stable_hash(results_schema.versioned({"retrain2": second_retrain_key(sc.cfg),
                                                           "eval": eval_key(sc.cfg, "epoch_cka")}))
    folder = store.cache_dir(key)
    with contextlib.suppress(store.CheckpointError):
        if (folder / "band.json").exists():
            return store.load_json(folder / "band.json")
    model, _ = _runner().cached_model(sc, second_retrain_key(sc.cfg), SECOND_RETRAIN, sc.idx("retain"), ctx)
    ctx.emit({"type": "stage", "stage": SECOND_RETRAIN, "name": SECOND_RETRAIN, "fraction": 1.0,
              "message": "measuring the reference noise (a second retrained model)"})
    entry, _ = evaluate(model, ev, ref_names=("original", "retrain"))
    band = {"seed": _runner().init_seed(sc.cfg, SECOND_RETRAIN), "metrics": entry["metrics"],
            **{k: entry[k] for k in ("cka_vs_original", "cka_vs_retrain", "probe_forget_acc") if k in entry}}
    store.atomic_write_json(folder / "band.json", band)
    return band


def noise_references(sc, ev: EvalSet, ctx: JobContext) -> dict:
    """The results.json blocks of the noise references the config asks for (seed_band, retrain_band)."""
    out = {}
    if wants_seed_band(sc.cfg):
        out["seed_band"] = seed_band(sc, ev, ctx)
    if wants_retrain_band(sc.cfg):
        out["retrain_band"] = retrain_band(sc, ev, ctx)
    return out


def eval_key(cfg: RunConfig, *also: str) -> dict:
    """The evaluation settings a cached reference row depends on (`also`: more to leave out)."""
    return cfg.eval.model_dump(exclude={"relearn", "relearn_samples", "relearn_steps", "relearn_lr", "umap",
                                        "seed_band", "retrain_band", *also})

