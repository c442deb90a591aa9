"""One unlearning run: a method through the shared loop on a copy of the original (`unlearn`), the
same at the scenario's calibrated strength (`calibrated_unlearn`, engine/calibrate.py), and the
relearn test of an unlearned model (`relearn_curve`). engine/runner.py builds the scenario, the
evaluation set and the base models these take, and turns their output into a job's results.
"""
from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from . import calibrate, store
from .catalog import reads_ec
from .config import RunConfig
from .evaluate import EvalSet, epoch_probe, forward_all, predict
from .events import JobContext
from .methods import create_method
from .methods.ec.method import build_method
from .training import LoopState, run_loop

if TYPE_CHECKING:  # runner imports this module
    from .runner import Bases, Scenario


def unlearn(sc: Scenario, ev: EvalSet, bases: Bases, method_name: str, ctx: JobContext,
            plugin: bool = False, epoch_embed: bool = False, cfg: RunConfig | None = None,
            epoch_hook=None, epoch_probes: bool = True) -> tuple[nn.Module, dict]:
    """Copy the original, run the method through the shared loop; returns (model, partial run entry).
    `cfg` replaces the scenario's config for this run (calibration's candidates); `epoch_hook(epoch,
    state, seconds)` sees the model after every epoch (and may end the run by setting state.stop);
    `epoch_probes=False` skips the per-epoch CKA (calibration scores candidates itself)."""
    cfg = cfg or sc.cfg
    cfg = cfg if plugin or cfg.plugin == "none" else cfg.model_copy(update={"plugin": "none"})
    method = build_method(cfg, method_name)
    hp = method.hp
    label = method.name if plugin else method_name
    model = copy.deepcopy(bases.original).train()
    state = LoopState(model=model, x=sc.x, y=sc.y, forget_idx=ev.idx["forget"], retain_idx=ev.idx["retain"],
                      num_classes=sc.num_classes, device=sc.device, job=ctx, original=bases.original.eval(),
                      extra={"aux": bases.aux} if bases.aux is not None else {})
    epoch_feats: list[np.ndarray] = []
    eval_seconds = [0.0]  # per-epoch measurements are not part of the method's run time

    def on_epoch(epoch, row):
        t = time.perf_counter()
        extra = epoch_probe(model, ev) if sc.cfg.eval.epoch_cka and epoch_probes else {}
        if epoch_embed:
            _, feats = forward_all(model, ev.x[ev.embed_idx])
            epoch_feats.append(feats[-1].cpu().numpy())
        if epoch_hook is not None:
            epoch_hook(epoch, state, t - t0 - eval_seconds[0])
        model.train()
        eval_seconds[0] += time.perf_counter() - t
        return extra

    t0 = time.perf_counter()
    history = run_loop(method, state, epochs=hp.epochs, lr=hp.lr, momentum=hp.momentum,
                       weight_decay=hp.weight_decay, seed=sc.cfg.seed, run_name=label, on_epoch=on_epoch)
    seconds = time.perf_counter() - t0 - eval_seconds[0]
    params = hp.model_dump()
    if reads_ec(method_name, plugin):
        params.update({"ec": cfg.ec.model_dump(), "layer_weights": cfg.layer_weights})
        if plugin:
            params["beta"] = cfg.beta
    entry = {"method": method_name, "label": label, "seconds": seconds, "params": params, "history": history}
    if epoch_feats:
        entry["_epoch_feats"] = epoch_feats
    return model.eval(), entry


def calibrated_unlearn(sc: Scenario, ev: EvalSet, bases: Bases, method_name: str, ctx: JobContext, kind: str,
                       plugin: bool = False, epoch_embed: bool = False) -> tuple[nn.Module, dict]:
    """`unlearn` at the scenario's calibrated strength (engine/calibrate.py): the cached choice, or a
    search now (whose chosen model is kept when the run's config is the calibration config). The run
    entry carries the `calibration` block."""
    cfg = sc.cfg
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
            same = (not plugin and not epoch_embed and
                    calibrate.calibration_config(cfg, method_name).ec == cfg.ec)
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


def relearn_curve(sc: Scenario, ev: EvalSet, model: nn.Module, ctx: JobContext) -> dict:
    """Fine-tune a copy on a handful of forget samples; forget accuracy after each step."""
    e = sc.cfg.eval
    gen = torch.Generator().manual_seed(sc.cfg.seed)
    few = ev.idx["forget"][torch.randperm(len(ev.idx["forget"]), generator=gen)[:e.relearn_samples].to(sc.device)]
    m = copy.deepcopy(model).train()
    hp = sc.cfg.methods.ft.model_copy(update={"batch_size": max(2, len(few)), "lr": e.relearn_lr, "epochs": e.relearn_steps})
    state = LoopState(model=m, x=sc.x, y=sc.y, forget_idx=few[:0], retain_idx=few, num_classes=sc.num_classes,
                      device=sc.device, job=JobContext())
    accs = [float((predict(m, ev.x[ev.idx["forget"]]).argmax(1) == ev.y[ev.idx["forget"]]).float().mean())]

    def on_epoch(epoch, row):
        accs.append(float((predict(m, ev.x[ev.idx["forget"]]).argmax(1) == ev.y[ev.idx["forget"]]).float().mean()))
        m.train()

    run_loop(create_method("ft", sc.cfg, hp=hp), state, epochs=e.relearn_steps, lr=e.relearn_lr,
             momentum=hp.momentum, weight_decay=0.0, seed=sc.cfg.seed, run_name="relearn", on_epoch=on_epoch)
    return {"steps": list(range(len(accs))), "forget_acc": accs}
