"""One unlearning run: a method through the shared loop on a copy of the original (`unlearn`), the
same at the scenario's calibrated strength (`calibrated_unlearn`, engine/calibrate.py), and the
relearn test of an unlearned model (`relearn_curve`). engine/runner.py builds the scenario, the
evaluation set and the base models these take, and turns their output into a job's results.

The per-epoch measurements (CKA probe, embeddings, calibration's hook) are loop plugins; their
time is taken off the method's run time by the `RunClock` they share.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import calibrate, store
from .config import RunConfig
from .evaluate import EvalSet, epoch_probe, forward_all, predict
from .events import JobContext
from .methods import build_method, create_method
from .training import LoopState, Plugin, run_loop

if TYPE_CHECKING:  # runner imports this module
    from .runner import Bases, Scenario


class RunClock(Plugin):
    """The method's run time: from the clock's start (just before the loop) to the loop's end, less
    what the per-epoch measurements took (each runs inside `measuring()`)."""

    def __init__(self):
        self.t0, self.measured, self.seconds = time.perf_counter(), 0.0, None

    def now(self) -> float:
        return time.perf_counter() - self.t0 - self.measured

    @contextmanager
    def measuring(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.measured += time.perf_counter() - t

    def teardown(self, state):
        self.seconds = self.now()


class Measurement(Plugin):
    """A per-epoch look at the model; not part of the method's run time. Leaves the model training."""

    def __init__(self, clock: RunClock):
        self.clock = clock

    def after_epoch(self, state):
        with self.clock.measuring():
            out = self.measure(state)
            state.model.train()
        return out

    def measure(self, state) -> dict | None:
        raise NotImplementedError


class EpochProbe(Measurement):
    """Forget / retain accuracy and forget-split CKA to the original, into the history row."""

    def __init__(self, clock: RunClock, ev: EvalSet):
        super().__init__(clock)
        self.ev = ev

    def measure(self, state):
        return epoch_probe(state.model, self.ev)


class EpochEmbeddings(Measurement):
    """Penultimate features of the embedding samples after every epoch (the Embeddings page's path)."""

    def __init__(self, clock: RunClock, ev: EvalSet):
        super().__init__(clock)
        self.ev, self.feats = ev, []

    def measure(self, state):
        _, feats = forward_all(state.model, self.ev.x[self.ev.embed_idx])
        self.feats.append(feats[-1].cpu().numpy())


class EpochHook(Measurement):
    """`hook(epoch, state, seconds so far)` after every epoch (calibration scores candidates so)."""

    def __init__(self, clock: RunClock, hook):
        super().__init__(clock)
        self.hook = hook

    def measure(self, state):
        self.hook(state.epoch, state, self.clock.now())


def unlearn(sc: Scenario, ev: EvalSet, bases: Bases, method_name: str, ctx: JobContext,
            plugin: bool = False, epoch_embed: bool = False, cfg: RunConfig | None = None,
            epoch_hook=None, epoch_probes: bool = True) -> tuple[nn.Module, dict]:
    """Copy the original, run the method through the shared loop; returns (model, partial run entry).
    `plugin` keeps the config's plug-in (else the method runs alone); `cfg` replaces the scenario's
    config for this run (calibration's candidates); `epoch_hook(epoch, state, seconds)` sees the model
    after every epoch (and may end the run by setting state.stop); `epoch_probes=False` skips the
    per-epoch CKA (calibration scores candidates itself)."""
    cfg = cfg or sc.cfg
    cfg = cfg if plugin or cfg.plugin == "none" else cfg.model_copy(update={"plugin": "none"})
    method, plugins = build_method(cfg, method_name)
    hp = method.hp
    label = cfg.label_of(method_name)
    model = copy.deepcopy(bases.original).train()
    state = LoopState(model=model, x=sc.x, y=sc.y, forget_idx=ev.idx["forget"], retain_idx=ev.idx["retain"],
                      num_classes=sc.num_classes, device=sc.device, job=ctx, original=bases.original.eval(),
                      extra=dict(bases.extras or {}))
    clock = RunClock()
    embeddings = EpochEmbeddings(clock, ev) if epoch_embed else None
    measurements = [EpochProbe(clock, ev) if sc.cfg.eval.epoch_cka and epoch_probes else None, embeddings,
                    EpochHook(clock, epoch_hook) if epoch_hook is not None else None]
    history = run_loop(method, state, epochs=hp.epochs, lr=hp.lr, momentum=hp.momentum,
                       weight_decay=hp.weight_decay, seed=sc.cfg.seed, run_name=label,
                       plugins=[*plugins, clock, *(m for m in measurements if m is not None)])
    params = method.run_params()
    for p in plugins:
        params.update(p.run_params())
    entry = {"method": method_name, "label": label, "seconds": clock.seconds, "params": params, "history": history}
    if embeddings is not None and embeddings.feats:
        entry["_epoch_feats"] = embeddings.feats
    return model.eval(), entry


def calibrated_unlearn(sc: Scenario, ev: EvalSet, bases: Bases, method_name: str, ctx: JobContext, kind: str,
                       plugin: bool = False, epoch_embed: bool = False) -> tuple[nn.Module, dict]:
    """`unlearn` at the scenario's calibrated strength (engine/calibrate.py): the cached choice, or a
    search now (whose chosen model is kept when the run's config is the calibration config). The run
    entry carries the `calibration` block."""
    cfg = sc.cfg
    plugin = plugin and cfg.plugged(method_name)  # a plug-in this run has
    hp = cfg.method_config(method_name)
    recipe = {"lr": hp.lr, "epochs": hp.epochs}
    mode, why = calibrate.resolve_mode(cfg, kind, method_name)
    key = calibrate.calibration_key(cfg, method_name)
    found = calibrate.load_cached(key) if mode == "cached" else None
    if mode == "off" or (mode == "cached" and found is None):
        model, entry = unlearn(sc, ev, bases, method_name, ctx, plugin=plugin, epoch_embed=epoch_embed)
        if mode == "cached":
            why = "no comparison of this scenario has calibrated it yet (run one, or --calibrate on)"
        entry["calibration"] = calibrate.check_block(model, ev, bases, recipe, f"recipe as given ({why})", cfg)
        return model, entry
    with store.cache_lock(key, wait=ctx.check):  # a second worker waits, then reuses this one's choice
        found = found or calibrate.load_cached(key)
        if found is not None:
            found = {**found, "source": "cached"}
        else:
            same = not plugin and not epoch_embed and _runs_as_calibrated(cfg, method_name)
            result = calibrate.search(sc, ev, bases, method_name, ctx, unlearn, keep_model=same)
            if result.model is not None:
                return result.model, {**result.entry, "calibration": result.block}
            found = result.block
    run_cfg = cfg.model_copy(deep=True)
    # no choice: every candidate diverged; the recipe runs and fails with the loop's own message
    setattr(run_cfg.methods, method_name, hp.model_copy(update=found["choice"] or {}))
    model, entry = unlearn(sc, ev, bases, method_name, ctx, plugin=plugin, epoch_embed=epoch_embed, cfg=run_cfg)
    entry["calibration"] = found
    return model, entry


def _runs_as_calibrated(cfg: RunConfig, method_name: str) -> bool:
    """Whether calibrating the method runs it exactly as this job does without a plug-in (the preset's
    defaults for the settings calibration fixes)."""
    fields = {"method", "plugin", "beta"}  # what a plug-in-free run of `method_name` does not read
    return (calibrate.calibration_config(cfg, method_name).model_dump(exclude=fields)
            == cfg.model_dump(exclude=fields))


def relearn_curve(sc: Scenario, ev: EvalSet, model: nn.Module, ctx: JobContext) -> dict:
    """Fine-tune a copy on a handful of forget samples; forget accuracy after each step."""
    e = sc.cfg.eval
    gen = torch.Generator().manual_seed(sc.cfg.seed)
    few = ev.idx["forget"][torch.randperm(len(ev.idx["forget"]), generator=gen)[:e.relearn_samples].to(sc.device)]
    m = copy.deepcopy(model).train()
    hp = sc.cfg.methods.ft.model_copy(update={"batch_size": max(2, len(few)), "lr": e.relearn_lr, "epochs": e.relearn_steps})
    state = LoopState(model=m, x=sc.x, y=sc.y, forget_idx=few[:0], retain_idx=few, num_classes=sc.num_classes,
                      device=sc.device, job=JobContext())
    accs = ForgetAccuracy(ev)
    accs.record(m)
    run_loop(create_method("ft", sc.cfg, hp=hp), state, epochs=e.relearn_steps, lr=e.relearn_lr,
             momentum=hp.momentum, weight_decay=0.0, seed=sc.cfg.seed, run_name="relearn", plugins=[accs])
    return {"steps": list(range(len(accs.values))), "forget_acc": accs.values}


class ForgetAccuracy(Plugin):
    """Forget accuracy after every epoch (`record` adds one more, e.g. before the loop)."""

    def __init__(self, ev: EvalSet):
        self.ev, self.values = ev, []

    def record(self, model: nn.Module) -> None:
        f = self.ev.idx["forget"]
        self.values.append(float((predict(model, self.ev.x[f]).argmax(1) == self.ev.y[f]).float().mean()))

    def after_epoch(self, state):
        self.record(state.model)
        state.model.train()
