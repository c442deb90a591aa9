"""EC (Erase at the Core), CU (its one-point ablation) and the EC plug-in for any other method.

At each supervision point l: pooled feature h_l, auxiliary classifier c_l and projector p_l,
z_l = normalize(p_l(h_l)). Loss: L_EC = sum_l w_l [lambda_CU * L_CU^l + lambda_CE * L_CE^l], with
L_CE at the last point taken from the model's own head. Plug-in: L = L_base + beta * L_EC.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

from pydantic import Field

from ...hparams import MethodConfig, epochs_field, lr_field
from ...lazy import F, torch
from ..base import (CONTRASTIVE_KNOBS, EC_SECTION_KNOBS, UNLEARNING_KNOBS, Method, MethodInfo, Plugin, needs_aux,
                    register, register_extra, register_plugin)
from ..baselines import optml
from .loss import contrastive_unlearning_loss

if TYPE_CHECKING:
    from .aux import AuxModules


def _aux_key(cfg) -> str:
    from ...config import aux_key  # engine.config reads these cards: imported when a key is asked for
    return aux_key(cfg)


@register_extra("aux", needed=needs_aux, key=_aux_key)
def cached_aux(sc, original, ctx):
    """The auxiliary modules of the scenario's original (engine/methods/ec/aux.py: nn.Modules, so
    imported only when a run needs them)."""
    from .aux import cached_aux
    return cached_aux(sc, original, ctx)


class ECLoss:
    """L_EC on one forget batch and one retain batch, from one forward pass of the model."""

    def __init__(self, aux: AuxModules, weights: list[float], tau: float, lambda_cu: float, lambda_ce: float):
        self.aux, self.weights = aux, weights
        self.tau, self.lambda_cu, self.lambda_ce = tau, lambda_cu, lambda_ce

    def __call__(self, model, xf, yf, xr, yr):
        from ...models import FeatureTaps, pool
        nf = len(xf)
        with FeatureTaps(model) as taps:
            logits = model(torch.cat([xf, xr]))
        total = logits.new_zeros(())
        logs = {}
        last = len(self.aux.points) - 1
        for i, (p, w) in enumerate(zip(self.aux.points, self.weights)):
            if w == 0:
                continue
            h = pool(taps.features[p]).float()
            head = self.aux.head(p)
            z = head.embed(h)
            l_cu = contrastive_unlearning_loss(z[:nf], yf, z[nf:], yr, self.tau)
            out_r = logits[nf:] if i == last else head.classifier(h[nf:])
            l_ce = F.cross_entropy(out_r.float(), yr)
            total = total + w * (self.lambda_cu * l_cu + self.lambda_ce * l_ce)
            logs[f"cu/{p}"] = l_cu.item()
            logs[f"ce/{p}"] = l_ce.item()
        return total, logs


def ec_params(cfg) -> dict:
    """The `ec` section's settings a run entry records for a run with EC's loss."""
    return {"ec": cfg.ec.model_dump(), "layer_weights": cfg.layer_weights}


class ECMethodConfig(MethodConfig):
    epochs: int = epochs_field(10)
    lr: float = lr_field(0.03)


# (no plug-in: EC already is that loss)
@register("ec", MethodInfo("EC", "#d62839", 100, ECMethodConfig,
                           {"teach": {"epochs": 10, "lr": 0.01}, "fashion": {"epochs": 6, "lr": 0.01 * 3},
                            "optml": optml(epochs=5, lr=0.01)},
                           needs_aux=True, reads_ec=True, pluggable=False,
                           form_knobs=UNLEARNING_KNOBS + EC_SECTION_KNOBS))
class EC(Method):
    """Erase at the Core. Each epoch passes `retain_per_forget` times over the forget set, each
    forget batch paired with a fresh retain batch (Lee et al. use several retain batches per
    forget batch)."""

    def weights(self) -> list[float]:
        return self.cfg.layer_weights

    def loss_params(self):
        ec = self.cfg.ec
        return ec.tau, ec.lambda_cu, ec.lambda_ce

    def steps_per_epoch(self, state):
        return max(1, math.ceil(len(state.forget_idx) / self.forget_batch)) * self.cfg.ec.retain_per_forget

    def run_params(self):
        params = super().run_params()
        if self.info.reads_ec:  # CU's loss knobs are its own section's
            params.update(ec_params(self.cfg))
        return params

    def setup(self, state):
        if "aux" not in state.extra:
            raise RuntimeError("EC needs its auxiliary modules: the runner prepares them "
                               "(the 'aux' extra, engine/methods/ec/aux.py)")
        self.aux = copy.deepcopy(state.extra["aux"]).to(state.device)
        self.aux.requires_grad_(not self.cfg.ec.freeze_aux)
        self.ec_loss = ECLoss(self.aux, self.weights(), *self.loss_params())

    def parameters(self, state):
        params = list(state.model.parameters())
        if not self.cfg.ec.freeze_aux:
            params += list(self.aux.parameters())
        return params

    def loss(self, state, xf, yf, xr, yr):
        return self.ec_loss(state.model, xf, yf, xr, yr)


class CUConfig(MethodConfig):
    # 5 epochs left class 0 half-forgotten with retain 0.76; 10 epochs at lr 0.01 keeps retain ~1.0
    epochs: int = epochs_field(10)
    tau: float = Field(0.7, gt=0, le=100)
    lambda_cu: float = Field(3.0, ge=0, le=1000)  # bounded like ec.lambda_cu
    lambda_ce: float = Field(1.0, ge=0, le=1000)


@register("cu", MethodInfo("CU", "#17becf", 90, CUConfig,
                           {"teach": {"epochs": 10, "lr": 0.03}, "fashion": {"epochs": 8, "lr": 0.03 * (1 / 3)},
                            "optml": optml(epochs=5, lr=0.01)},
                           needs_aux=True, form_knobs=UNLEARNING_KNOBS + CONTRASTIVE_KNOBS))
class CU(EC):
    """Contrastive Unlearning (Lee et al.): EC's loss at the penultimate point only."""

    def weights(self):
        return [0.0] * (len(self.cfg.supervision_points) - 1) + [1.0]

    def loss_params(self):
        return self.hp.tau, self.hp.lambda_cu, self.hp.lambda_ce


@register_plugin("ec")
class ECPlugin(Plugin):
    """L = L_base + beta * L_EC for any pluggable method (`plugin: ec`): EC's loss on the method's
    batches (a forget and a retain batch every step, drawn at the method's batch size where the
    method uses none), with its own copy of the auxiliary modules, trained unless ec.freeze_aux."""
    streams = ("forget", "retain")

    def __init__(self, cfg, method: Method):
        self.cfg = cfg
        self.ec = EC(cfg, hp=method.hp)

    def run_params(self):
        return {**ec_params(self.cfg), "beta": self.cfg.beta}

    def setup(self, state):
        self.ec.setup(state)

    def parameters(self, state):
        return [] if self.cfg.ec.freeze_aux else list(self.ec.aux.parameters())

    def loss(self, state, xf, yf, xr, yr):
        ec_loss, logs = self.ec.loss(state, xf, yf, xr, yr)
        return self.cfg.beta * ec_loss, {f"ec/{k}": v for k, v in logs.items()}
