"""Per-scenario calibration of every method's strength, under one rule (issue 9).

A recipe tuned on one scenario does not carry over: on another forget class, seed or data set a
baseline may not forget at all, and a comparison against it says nothing. So before a method's run
in a comparison, a small grid over its strength is tried and one setting is kept by the same rule
for every method, EC included:

    grid     learning rate x epochs: lr in recipe lr x `calibration.lr_factors` (default 1/3, 1, 3),
             epochs 1..recipe epochs. One training run per learning rate gives every epoch count:
             unlearning runs at constant LR with a seeded batch order, so the model after e epochs
             of an E-epoch run IS the e-epoch run (methods whose schedule depends on the total,
             `Method.schedule_uses_epochs`, e.g. l1-sparse's decaying L1 weight, score their full
             run only).
    scores   forget accuracy on the forget TRAINING split and retain accuracy on the retain training
             split (the evaluation's subsamples of them); the test split is never read.
    rule     among the settings whose forget accuracy is within `calibration.tolerance` (0.05) of the
             retrained model's and whose retain accuracy has not collapsed (at least
             `calibration.collapse` x the original's: a broken model misclassifies the forget class
             too, which is not forgetting), keep the one with the highest retain accuracy. If none
             qualifies, keep the closest (a working model before a broken one) and mark the run
             "did not reach logit-level forgetting".
    early    a candidate stops when its retain accuracy is below `calibration.collapse` (0.5) x the
    stop     original's and not recovering (no higher than the epoch before), or when its loss
             diverges: later epochs of it are not tried.

The choice is cached per scenario and method recipe (`calibration_key`), so a second comparison, a
dashboard rerun or a single `run` of the method reuses it. EC's layer weights and temperature are not
part of the search: EC is calibrated at the preset's default knobs, and what a user tunes on top runs
at that calibrated strength.

`choose` is the rule as a pure function on candidate scores; the rest runs candidates through the
one training loop (engine.unlearning.unlearn).
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from . import cachecheck, store
from .catalog import cpu_presets, needs_aux
from .config import RunConfig, make_config, scenario_dict, stable_hash
from .events import DivergenceError, JobContext

# presets whose recipes are calibrated under `calibrate: auto`: those of the CPU-cheap data sets (their
# registrations, engine/data/sets); the CIFAR presets keep their published recipes unless asked
AUTO_PRESETS = cpu_presets()
CACHE_VERSION = 2  # 2: a collapsed setting no longer qualifies


@dataclass
class Candidate:
    lr: float
    epochs: int
    forget_acc: float
    retain_acc: float
    qualifies: bool = False
    stopped: str | None = None

    def row(self) -> dict:
        d = asdict(self)
        if d["stopped"] is None:
            d.pop("stopped")
        return d


@dataclass
class Choice:
    index: int | None  # into the candidate list; None when there was no candidate at all
    reached: bool
    reason: str
    candidates: list[Candidate] = field(default_factory=list)


def resolve_mode(cfg: RunConfig, kind: str, method: str) -> tuple[str, str]:
    """("on" | "cached" | "off", why) for `method` in this job.

    `auto` calibrates where a recipe cannot be trusted and keeps it where it can:
    - off for the CIFAR presets (their published recipes stand); sweeps set `calibrate: off` for
      every trial (a trial runs exactly the settings the sweep chose);
    - off for a method whose lr or epochs the user set: that is the user's choice of strength;
    - off on the preset's own scenario (its default class, seed, data, model and training), the one
      its recipes were tuned on under this same rule; the run is still checked against retrain;
    - otherwise on for a comparison; a single run uses a comparison's cached choice when there is
      one and the recipe when there is not (a run is not made 3x slower by a search it did not ask for).
    """
    if cfg.calibrate == "off":
        return "off", "calibrate: off"
    if cfg.calibrate == "on":
        return ("on" if kind in ("compare", "run") else "off"), "calibrate: on"
    if kind not in ("compare", "run") or cfg.preset not in AUTO_PRESETS:
        return "off", f"calibrate: auto keeps the {cfg.preset} recipes (--calibrate on searches)"
    d = make_config(cfg.preset)
    hp, rec = cfg.method_config(method), d.method_config(method)
    if (hp.lr, hp.epochs) != (rec.lr, rec.epochs):
        return "off", "lr / epochs set by the user"
    if scenario_dict(cfg) == scenario_dict(d):
        return "off", f"the {cfg.preset} recipe, tuned on this scenario under the same rule"
    if kind == "run":
        return "cached", "calibrate: auto (a comparison's choice when one exists)"
    return "on", "calibrate: auto (not the scenario the recipe was tuned on)"


def qualifies(forget_acc: float, target: float, tolerance: float, retain_acc: float = 1.0, floor: float = 0.0) -> bool:
    """Forget accuracy within `tolerance` of retrain's, and retain accuracy not collapsed below
    `floor`: a model broken enough to misclassify everything has not forgotten, it is destroyed."""
    return abs(forget_acc - target) <= tolerance + 1e-9 and retain_acc >= floor


def _rank(c: Candidate, target: float, floor: float = 0.0) -> tuple:
    gap = abs(c.forget_acc - target)
    # qualifying: highest retain, then closest forget, then fewer epochs and lower lr (cheaper, gentler);
    # otherwise a setting that kept the model working before one that broke it, then the closest forget
    if c.qualifies:
        return (2, c.retain_acc, -gap, -c.epochs, -c.lr)
    return (0, c.retain_acc >= floor, -gap, c.retain_acc, -c.epochs, -c.lr)


def choose(candidates: list[Candidate], target: float, tolerance: float, floor: float = 0.0) -> Choice:
    """The one rule. Pure: `candidates` carry their scores; `qualifies` is recomputed here. `floor`:
    the retain accuracy below which a setting counts as collapsed (calibration.collapse x original's)."""
    for c in candidates:
        c.qualifies = qualifies(c.forget_acc, target, tolerance, c.retain_acc, floor)
    if not candidates:
        return Choice(None, False, "no setting could be scored (every candidate diverged)", candidates)
    best = max(range(len(candidates)), key=lambda i: _rank(candidates[i], target, floor))
    c = candidates[best]
    n_ok = sum(x.qualifies for x in candidates)
    if c.qualifies:
        reason = (f"highest retain accuracy ({c.retain_acc:.3f}) among {n_ok} of {len(candidates)} settings "
                  f"within {tolerance:g} of retrain's forget accuracy ({target:.3f})"
                  + (f" with retain at least {floor:.3f}" if floor > 0 else ""))
        return Choice(best, True, reason, candidates)
    broke = sum(qualifies(x.forget_acc, target, tolerance) and x.retain_acc < floor for x in candidates)
    reason = (f"did not reach logit-level forgetting: no setting of {len(candidates)} came within {tolerance:g} "
              f"of retrain's forget accuracy ({target:.3f})"
              + (f" without collapsing retain accuracy below {floor:.3f} ({broke} did, by breaking the model)"
                 if broke else "")
              + f"; kept the closest (forget {c.forget_acc:.3f}, retain {c.retain_acc:.3f})")
    return Choice(best, False, reason, candidates)


def lr_grid(recipe_lr: float, factors: list[float]) -> list[float]:
    """Recipe first (it is what an uncalibrated run would do), then the others in the given order."""
    lrs = [recipe_lr] + [recipe_lr * f for f in factors if abs(f - 1.0) > 1e-9]
    return [float(f"{lr:.6g}") for lr in lrs]


def calibration_config(cfg: RunConfig, method: str) -> RunConfig:
    """The config a method is calibrated under: the scenario and the method's own recipe, EC's knobs
    at the preset's defaults, no plug-in."""
    d = make_config(cfg.preset) if cfg.preset != "custom" else cfg
    return cfg.model_copy(update={"ec": d.ec, "plugin": "none", "beta": d.beta, "method": method})


def calibration_key(cfg: RunConfig, method: str) -> str:
    cal = calibration_config(cfg, method)
    d = {"v": CACHE_VERSION, "scenario": scenario_dict(cal), "method": method,
         "hp": cal.method_config(method).model_dump(), "calibration": cal.calibration.model_dump(),
         "max_samples": cal.eval.max_samples}
    if needs_aux(method):  # its auxiliary modules come from the `ec` section
        d["ec"] = cal.ec.model_dump()
    return "calib-" + stable_hash(d)


def block(choice: Choice, grid: list[Candidate], recipe: dict, target: float, tolerance: float,
          seconds: float, floor: float = 0.0) -> dict:
    """The results.json `calibration` block of one run; `grid` is every candidate tried, the diverged
    ones (which `choice` never saw) included."""
    c = choice.candidates[choice.index] if choice.index is not None else None
    return {"used": c is not None, "mode": "on", "source": "searched", "recipe": recipe,
            "choice": {"lr": c.lr, "epochs": c.epochs} if c else None,
            "target": {"forget_acc": target, "tolerance": tolerance, "retain_floor": floor},
            "grid": [x.row() for x in grid], "reached": choice.reached, "reason": choice.reason,
            "seconds": seconds}


def off_block(recipe: dict, reason: str, forget_acc: float, target: float, tolerance: float,
              retain_acc: float = 1.0, floor: float = 0.0) -> dict:
    """A run at its recipe (or the user's setting), still checked against retrain on the forget
    training split (and for a collapsed retain accuracy), so a recipe that does not forget is marked
    like a calibration that did not."""
    reached = qualifies(forget_acc, target, tolerance, retain_acc, floor)  # False for NaN (a diverged run)
    return {"used": False, "mode": "off", "recipe": recipe, "reason": reason, "forget_acc": forget_acc,
            "retain_acc": retain_acc, "target": {"forget_acc": target, "tolerance": tolerance, "retain_floor": floor},
            "reached": reached}


def check_block(model, ev, bases, recipe: dict, reason: str, cfg: RunConfig) -> dict:
    f_idx, r_idx, target, floor = targets(ev, bases, cfg.calibration.collapse)
    return off_block(recipe, reason, accuracy_on(model, ev, f_idx), target, cfg.calibration.tolerance,
                     accuracy_on(model, ev, r_idx), floor)


def load_cached(key: str) -> dict | None:
    """The cached calibration block of `key`, or None (searched again). A file that does not parse or
    holds a choice of the wrong types (a hand edit, another version) is set aside with a warning."""
    path = store.cache_dir(key) / "calibration.json"
    if not path.exists():
        return None
    try:
        found = store.load_json(path)
        problem = cached_problem(found)
    except store.CheckpointError as err:
        problem = str(err)
    if problem is None:
        return found if found.get("choice") is not None else None
    aside = cachecheck.set_aside(path.parent, path.name)
    print(f"warning: calibration cache {path} is unusable ({problem}); "
          f"{'moved aside to ' + aside.name if aside else 'ignored'}: the setting is searched again", file=sys.stderr)
    return None


def cached_problem(found) -> str | None:
    """Why a cached calibration block cannot be used (None when it can): its choice is what the run trains
    with, so lr must be a positive finite number and epochs a positive whole number."""
    if not isinstance(found, dict):
        return "not a JSON object"
    choice = found.get("choice")
    if choice is None:
        return None
    if not isinstance(choice, dict) or set(choice) != {"lr", "epochs"}:
        return f"choice {choice!r} is not {{'lr': ..., 'epochs': ...}}"
    lr, epochs = choice["lr"], choice["epochs"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        return f"choice lr {lr!r} is not a positive number"
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        return f"choice epochs {epochs!r} is not a positive whole number"
    if not isinstance(found.get("grid"), list) or not isinstance(found.get("reached"), bool):
        return "grid or reached is missing or of the wrong type"
    return None


def save_cached(key: str, data: dict) -> None:
    store.atomic_write_json(store.cache_dir(key) / "calibration.json", data)


@dataclass
class Search:
    """The outcome of a search: the block, and the chosen candidate's model and run entry when the
    search ran under the job's own config (then the comparison keeps it instead of running again)."""
    block: dict
    model: torch.nn.Module | None = None
    entry: dict | None = None


def score_indices(ev) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples a candidate is scored on: the evaluation's subsamples of the forget and retain
    TRAINING splits. Never the test split: choosing on it would be peeking."""
    return ev.cka_idx["forget"], ev.cka_idx["retain"]


def targets(ev, bases, collapse: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(forget idx, retain idx, retrain's forget accuracy, the retain floor) every setting is judged by:
    the target to come within the tolerance of, and `collapse` x the original's retain accuracy."""
    f_idx, r_idx = score_indices(ev)
    key = ("calibration targets", id(bases.retrain), id(bases.original))
    if key not in ev.memo:  # the same for every method of a scenario: two forward passes, once
        ev.memo[key] = (accuracy_on(bases.retrain, ev, f_idx), accuracy_on(bases.original, ev, r_idx))
    target, original_retain = ev.memo[key]
    return f_idx, r_idx, target, collapse * original_retain


def accuracy_on(model, ev, idx: torch.Tensor) -> float:
    from .evaluate import predict
    if len(idx) == 0:
        return float("nan")
    logits = predict(model, ev.x[idx])
    if not torch.isfinite(logits).all():
        return float("nan")  # the candidate diverged: it is not scored
    return float((logits.argmax(1) == ev.y[idx].cpu()).float().mean())


def search(sc, ev, bases, method: str, ctx: JobContext, unlearn, keep_model: bool) -> Search:
    """Run the grid for `method` through `unlearn` (engine.unlearning.unlearn) and return the choice. With
    `keep_model` (the job runs exactly the calibration config) the chosen model and its run entry
    come back too, so the comparison does not train it a second time."""
    cal_cfg = calibration_config(sc.cfg, method)
    knobs = cal_cfg.calibration
    hp = cal_cfg.method_config(method)
    recipe = {"lr": hp.lr, "epochs": hp.epochs}
    f_idx, r_idx, target, floor = targets(ev, bases, knobs.collapse)
    from .methods import create_method
    prefix_exact = not getattr(create_method(method, cal_cfg), "schedule_uses_epochs", False)
    t0 = time.perf_counter()
    candidates: list[Candidate] = []
    best: dict = {}  # the best-ranked scored candidate so far: rank, (lr, epochs), model state, seconds
    kept: tuple | None = None  # (lr, model, entry) of the training run the best candidate came from
    first_error: DivergenceError | None = None
    lrs = lr_grid(hp.lr, knobs.lr_factors)
    for i, lr in enumerate(lrs):
        ctx.emit({"type": "stage", "stage": "calibrate", "name": method, "fraction": i / len(lrs),
                  "message": f"calibrating {method}: lr {lr:g} ({i + 1}/{len(lrs)})"})
        run_cfg = cal_cfg.model_copy(deep=True)
        setattr(run_cfg.methods, method, hp.model_copy(update={"lr": lr}))

        def score(epoch: int, state, seconds: float) -> None:
            """Score the model after `epoch` + 1 epochs; a collapsed candidate ends its run."""
            if not prefix_exact and epoch + 1 < hp.epochs:
                return
            c = Candidate(lr, epoch + 1, accuracy_on(state.model, ev, f_idx), accuracy_on(state.model, ev, r_idx))
            c.qualifies = qualifies(c.forget_acc, target, knobs.tolerance, c.retain_acc, floor)
            prev = candidates[-1] if len(candidates) > n_before else None
            # collapsed and not recovering (EC's retain dips in its first epoch, then comes back)
            if c.retain_acc < floor and prev is not None and c.retain_acc <= prev.retain_acc:
                c.stopped, state.stop = "retain collapsed", True
            candidates.append(c)
            if c.forget_acc != c.forget_acc:  # NaN: the outputs overflowed; never a choice
                return
            rank = _rank(c, target, floor)
            if keep_model and (not best or rank > best["rank"]):
                best.update(rank=rank, at=(lr, epoch + 1), state=copy.deepcopy(state.model.state_dict()),
                            seconds=seconds)

        n_before = len(candidates)
        try:
            # no per-epoch CKA for candidates (CKA on two splits per candidate epoch): the kept run's
            # history has per-epoch losses, not CKA by epoch
            model, entry = unlearn(sc, ev, bases, method, ctx, cfg=run_cfg, epoch_hook=score, epoch_probes=False)
            if best and best["at"][0] == lr:
                kept = (lr, model, entry)  # an earlier run's model is no longer needed
        except DivergenceError as err:
            first_error = first_error or err
            if len(candidates) > n_before:
                candidates[-1].stopped = "diverged (later epochs)"
            else:
                candidates.append(Candidate(lr, 1, float("nan"), float("nan"), stopped="diverged"))
    for c in candidates:
        if c.forget_acc != c.forget_acc and not c.stopped:  # NaN: the model's outputs overflowed
            c.stopped = "diverged"
    scored = [c for c in candidates if c.forget_acc == c.forget_acc]
    if not scored and first_error is not None:
        raise first_error
    choice = choose(scored, target, knobs.tolerance, floor)
    out = block(choice, candidates, recipe, target, knobs.tolerance, time.perf_counter() - t0, floor)
    save_cached(calibration_key(sc.cfg, method), out)
    chosen = out["choice"]
    # the streamed best is the choice (same ranking); anything else (none, or its run diverged later)
    # is trained again by the caller
    if chosen is None or kept is None or best["at"] != (chosen["lr"], chosen["epochs"]) or kept[0] != chosen["lr"]:
        return Search(out)
    _, model, entry = kept
    model.load_state_dict(best["state"])
    entry["history"] = entry["history"][:chosen["epochs"]]
    entry["params"] = {**entry["params"], "lr": chosen["lr"], "epochs": chosen["epochs"]}
    entry["seconds"] = best["seconds"]
    return Search(out, model.eval(), entry)
