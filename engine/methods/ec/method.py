"""EC (Erase at the Core), CU (its one-point ablation) and the EC plug-in for any other method.

At each supervision point l: pooled feature h_l, auxiliary classifier c_l and projector p_l,
z_l = normalize(p_l(h_l)). Loss: L_EC = sum_l w_l [lambda_CU * L_CU^l + lambda_CE * L_CE^l], with
L_CE at the last point taken from the model's own head. Plug-in: L = L_base + beta * L_EC.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...catalog import METHODS
from ...models import FeatureTaps, pool
from ..base import Method, create_method, register
from .loss import contrastive_unlearning_loss, supcon_loss


class AuxHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, proj_dim: int):
        super().__init__()
        self.classifier = nn.Linear(channels, num_classes)
        self.projector = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                                       nn.Linear(channels, proj_dim))

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(h), dim=1)


class AuxModules(nn.Module):
    """One AuxHead per supervision point (module names with '.' are stored with '_')."""

    def __init__(self, points: list[str], channels: list[int], num_classes: int, proj_dim: int):
        super().__init__()
        self.points = list(points)
        self.heads = nn.ModuleDict({p.replace(".", "_"): AuxHead(c, num_classes, proj_dim)
                                    for p, c in zip(points, channels)})

    def head(self, point: str) -> AuxHead:
        return self.heads[point.replace(".", "_")]


@torch.no_grad()
def pooled_features(model: nn.Module, x: torch.Tensor, batch: int = 512) -> list[torch.Tensor]:
    model.eval()
    outs: list[list[torch.Tensor]] = [[] for _ in model.supervision_points]
    with FeatureTaps(model, detach=True) as taps:
        for chunk in x.split(batch):
            model(chunk)
            for i, f in enumerate(taps.ordered()):
                outs[i].append(pool(f).float())
    return [torch.cat(o) for o in outs]


def pretrain_aux(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, proj_dim: int,
                 epochs: int, lr: float, seed: int = 0, job=None) -> tuple[AuxModules, dict]:
    """Train the auxiliary modules on the frozen original: CE for the classifiers, a supervised
    contrastive warm-up for the projectors. Features are extracted once, so this is cheap."""
    feats = pooled_features(model, x)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    aux = AuxModules(model.supervision_points, [f.shape[1] for f in feats], num_classes, proj_dim).to(x.device)
    opt = torch.optim.Adam(aux.parameters(), lr=lr)
    n, bs = len(y), 256
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g).to(x.device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = sum(F.cross_entropy(aux.head(p).classifier(f[idx]), y[idx])
                       + supcon_loss(aux.head(p).embed(f[idx]), y[idx])
                       for p, f in zip(aux.points, feats))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if job is not None:
            job.check()
            job.emit({"type": "stage", "stage": "aux", "name": "aux", "fraction": (epoch + 1) / epochs,
                      "message": f"auxiliary modules epoch {epoch + 1}/{epochs}"})
    with torch.no_grad():
        acc = {p: (aux.head(p).classifier(f).argmax(1) == y).float().mean().item() for p, f in zip(aux.points, feats)}
    return aux, {"aux_train_acc": acc}


class ECLoss:
    """L_EC on one forget batch and one retain batch, from one forward pass of the model."""

    def __init__(self, aux: AuxModules, weights: list[float], tau: float, lambda_cu: float, lambda_ce: float):
        self.aux, self.weights = aux, weights
        self.tau, self.lambda_cu, self.lambda_ce = tau, lambda_cu, lambda_ce

    def __call__(self, model, xf, yf, xr, yr):
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


@register("ec")
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

    def setup(self, state):
        if "aux" not in state.extra:
            raise RuntimeError("EC needs its auxiliary modules: the runner pretrains them (engine.runner.base_models)")
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


@register("cu")
class CU(EC):
    """Contrastive Unlearning (Lee et al.): EC's loss at the penultimate point only."""

    def weights(self):
        return [0.0] * (len(self.cfg.supervision_points) - 1) + [1.0]

    def loss_params(self):
        return self.hp.tau, self.hp.lambda_cu, self.hp.lambda_ce


class ECPlugin(Method):
    """L = L_base + beta * L_EC for any registered base method (`plugin: ec`)."""

    def __init__(self, cfg, base_name: str):
        self.base = create_method(base_name, cfg)
        super().__init__(cfg, hp=self.base.hp)
        self.name = f"{base_name}+ec"
        self.ec = EC(cfg, hp=self.base.hp)

    @property
    def forget_batch(self):
        return self.base.forget_batch or self.hp.batch_size

    @property
    def retain_batch(self):
        return self.base.retain_batch or self.hp.batch_size

    def steps_per_epoch(self, state):
        return self.base.steps_per_epoch(state)

    def setup(self, state):
        self.base.setup(state)
        self.ec.setup(state)

    def parameters(self, state):
        params = list(self.base.parameters(state))
        if not self.cfg.ec.freeze_aux:
            params += list(self.ec.aux.parameters())
        return params

    def before_step(self, state):
        self.base.before_step(state)

    def loss(self, state, xf, yf, xr, yr):
        base_loss, logs = self.base.loss(state, xf, yf, xr, yr)
        ec_loss, ec_logs = self.ec.loss(state, xf, yf, xr, yr)
        logs = {**logs, **{f"ec/{k}": v for k, v in ec_logs.items()}, "base": base_loss.item()}
        return base_loss + self.cfg.beta * ec_loss, logs

    def after_backward(self, state):
        self.base.after_backward(state)

    def after_step(self, state):
        self.base.after_step(state)

    def after_epoch(self, state):
        self.base.after_epoch(state)


def build_method(cfg, name: str | None = None) -> Method:
    """The method a config asks for, wrapped in the EC plug-in when `plugin: ec`."""
    name = name or cfg.method
    if cfg.plugin == "ec" and METHODS[name].pluggable:  # not EC itself, nor retrain (engine/catalog.py)
        return ECPlugin(cfg, name)
    return create_method(name, cfg)
