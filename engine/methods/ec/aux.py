"""EC's auxiliary modules: a classifier and a projector per supervision point, pretrained once per
original model on its frozen features (`pretrain_aux`), cached by configuration hash and prepared
for the runner through the methods' extras registry (`cached_aux`, registered as "aux" in
engine/methods/ec/method.py for every run the catalog says needs them: EC, CU and any method with
the EC plug-in). This module subclasses nn.Module, so it is imported only when a run needs it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ... import store
from ...config import aux_key
from ...models import FeatureTaps, point_channels, pool
from .loss import supcon_loss


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
                      "epoch": epoch + 1, "epochs": epochs, "message": f"auxiliary modules epoch {epoch + 1}/{epochs}"})
    with torch.no_grad():
        acc = {p: (aux.head(p).classifier(f).argmax(1) == y).float().mean().item() for p, f in zip(aux.points, feats)}
    return aux, {"aux_train_acc": acc}


def cached_aux(sc, original: nn.Module, ctx) -> AuxModules:
    """The auxiliary modules of the scenario's original: from the cache, or pretrained now (then cached)."""
    ec = sc.cfg.ec
    train_idx = sc.idx("train")
    channels = point_channels(original, sc.x[train_idx[:2]])
    aux = AuxModules(original.supervision_points, channels, sc.num_classes, ec.projector_dim).to(sc.device)
    with store.cache_lock(aux_key(sc.cfg), wait=ctx.check) as folder:
        path = folder / "aux.safetensors"
        if path.exists():
            store.load_state_strict(aux, path)
            return aux
        aux, info = pretrain_aux(original, sc.x[train_idx], sc.y[train_idx], sc.num_classes, ec.projector_dim,
                                 ec.aux_epochs, ec.aux_lr, seed=sc.cfg.seed, job=ctx)
        store.atomic_save_safetensors(path, aux.state_dict(), {"key": aux_key(sc.cfg)})
        store.atomic_write_json(folder / "meta.json", info)
        return aux
