"""Measure one model against the original and the retrained model, at the logits and at every layer.

The evaluation splits (forget, retain subset, forget-class test, remaining-class test) and their
minibatches are fixed once per scenario; the references' per-batch centred Gram matrices are
computed once and reused for every method, so each extra method costs one pass of feature
extraction plus O(batch^2) products.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .events import DivergenceError
from .metrics.accuracy import accuracy, confusion_matrix, per_class_accuracy
from .metrics.cka import batch_slices, centred_gram
from .metrics.knn import knn_accuracy
from .metrics.mia import mia_efficacy
from .metrics.probes import linear_probe_accuracy
from .models import FeatureTaps, pool

SPLITS = ("forget", "retain", "forget_test", "retain_test")


@dataclass
class EvalSet:
    """Everything fixed per scenario: data on the device, index sets, the CKA batches."""
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    points: list[str]
    idx: dict[str, torch.Tensor]  # forget, retain, test, forget_test, retain_test, train (all on device)
    cka_idx: dict[str, torch.Tensor]  # per split: the (subsampled) samples CKA is computed on
    embed_idx: torch.Tensor  # stratified subsample of training samples for the embedding views
    cka_batch: int
    probe_epochs: int
    knn_k: int
    seed: int = 0
    class_wise: bool = True
    ref_grams: dict = field(default_factory=dict)  # (ref name, split) -> list of (L, b*b) tensors
    memo: dict = field(default_factory=dict)  # per-scenario figures computed once (engine/calibrate.py)

    def batches(self, split: str) -> list[torch.Tensor]:
        idx = self.cka_idx[split]
        return [idx[s] for s in batch_slices(len(idx), self.cka_batch)] if len(idx) >= 4 else []


@torch.no_grad()
def forward_all(model: nn.Module, x: torch.Tensor, batch: int = 512, flatten: bool = False):
    """Logits and, per supervision point, pooled (or flattened) features, in eval mode."""
    model.eval()
    logits, feats = [], [[] for _ in model.supervision_points]
    with FeatureTaps(model, detach=True) as taps:
        for chunk in x.split(batch):
            logits.append(model(chunk).float())
            for i, f in enumerate(taps.ordered()):
                feats[i].append(f.flatten(1).float() if flatten else pool(f).float())
    return torch.cat(logits), [torch.cat(f) for f in feats]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat([model(c).float() for c in x.split(batch)]) if len(x) else torch.empty(0)


def grams(model: nn.Module, ev: EvalSet, split: str) -> list[torch.Tensor]:
    """Per CKA batch of `split`: the model's scaled centred Grams, one row per layer."""
    out = []
    for b in ev.batches(split):
        _, feats = forward_all(model, ev.x[b], flatten=True)
        out.append(torch.stack([centred_gram(f).reshape(-1) for f in feats]))
    return out


def cka_from_grams(ga: list[torch.Tensor], gb: list[torch.Tensor]) -> np.ndarray:
    """Layer x layer minibatch CKA (unbiased HSIC) from per-batch Gram rows."""
    if not ga:
        return np.full((0, 0), np.nan)
    hab = sum(a @ b.T for a, b in zip(ga, gb))
    haa = sum((a * a).sum(1) for a in ga)
    hbb = sum((b * b).sum(1) for b in gb)
    denom = torch.outer(haa, hbb)
    out = torch.where(denom > 0, hab / denom.clamp(min=1e-300).sqrt(), torch.full_like(hab, float("nan")))
    return out.cpu().numpy()


def cka_per_layer(model_grams, ref_grams, points) -> dict[str, float]:
    m = cka_from_grams(model_grams, ref_grams)
    return {p: _f(m[i, i]) for i, p in enumerate(points)} if m.size else {}


def _f(v) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def true_conf(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    if len(y) == 0:
        return np.zeros(0, np.float32)
    return F.softmax(logits, 1).gather(1, y[:, None]).squeeze(1).cpu().numpy().astype(np.float32)


def prepare_references(ev: EvalSet, refs: dict[str, nn.Module]) -> None:
    for name, model in refs.items():
        for split in SPLITS:
            ev.ref_grams[(name, split)] = grams(model, ev, split)


def logit_metrics(model: nn.Module, ev: EvalSet) -> tuple[dict, dict]:
    logits = {k: predict(model, ev.x[ev.idx[k]]) for k in ("forget", "retain", "test", "forget_test", "retain_test")}
    m = {f"{k}_acc": _f(accuracy(logits[k], ev.y[ev.idx[k]].cpu())) if len(ev.idx[k]) else None for k in logits}
    confs = {k: true_conf(logits[k], ev.y[ev.idx[k]]) for k in ("forget", "retain", "test")}
    mia = mia_efficacy(confs["retain"], confs["test"], confs["forget"], seed=ev.seed)
    m["mia_efficacy"] = float(mia["mia_efficacy"])
    test_pred = logits["test"].argmax(1).cpu()
    test_y = ev.y[ev.idx["test"]].cpu()
    extra = {"per_class_test_acc": [_f(v) for v in per_class_accuracy(test_pred, test_y, ev.num_classes)],
             "confusion_test": confusion_matrix(test_pred, test_y, ev.num_classes),
             "mia": {"decision_grid": mia["decision_grid"]}, "conf": confs}
    return m, extra


def probe_and_knn(model: nn.Module, ev: EvalSet) -> tuple[dict, float | None]:
    """Linear-probe accuracy per layer and k-NN accuracy on the penultimate features.
    Class-wise: probes trained on all training classes, tested on forget-class test samples.
    Random: trained on the retain set, tested on the forget samples themselves."""
    train_key, query_key = ("train", "forget_test") if ev.class_wise else ("retain", "forget")
    if len(ev.idx[query_key]) == 0:
        return {p: None for p in ev.points}, None
    _, f_train = forward_all(model, ev.x[ev.idx[train_key]])
    _, f_query = forward_all(model, ev.x[ev.idx[query_key]])
    y_train, y_query = ev.y[ev.idx[train_key]], ev.y[ev.idx[query_key]]
    probes = {p: _f(linear_probe_accuracy(ft, y_train, fq, y_query, ev.num_classes, epochs=ev.probe_epochs,
                                          seed=ev.seed, device=str(ft.device)))
              for p, ft, fq in zip(ev.points, f_train, f_query)}
    knn = _f(knn_accuracy(f_train[-1], y_train, f_query[-1], y_query, k=ev.knn_k))
    return probes, knn


def evaluate(model: nn.Module, ev: EvalSet, ref_names=("original", "retrain")) -> tuple[dict, dict]:
    """The run entry of results.json for `model` (without method/seconds), and its arrays."""
    for p in model.parameters():
        if not torch.isfinite(p).all():
            raise DivergenceError("the unlearned model has non-finite weights: the run diverged; "
                                  "lower the method's learning rate (methods.<name>.lr) and run again")
    metrics, extra = logit_metrics(model, ev)
    probes, knn = probe_and_knn(model, ev)
    metrics["knn_forget_acc"] = knn
    entry = {"metrics": metrics, "probe_forget_acc": probes,
             "per_class_test_acc": extra["per_class_test_acc"], "confusion_test": extra["confusion_test"],
             "mia": extra["mia"]}
    own = {split: grams(model, ev, split) for split in SPLITS}
    for ref in ref_names:
        key = "cka_vs_original" if ref == "original" else "cka_vs_retrain"
        entry[key] = {s: cka_per_layer(own[s], ev.ref_grams[(ref, s)], ev.points)
                      for s in SPLITS if own[s] and (ref, s) in ev.ref_grams}
    if own["forget"] and ("original", "forget") in ev.ref_grams:
        entry["cka_matrix_vs_original"] = np.round(cka_from_grams(own["forget"], ev.ref_grams[("original", "forget")]), 5).tolist()
    _, feats = forward_all(model, ev.x[ev.embed_idx])
    if any(not torch.isfinite(f).all() or f.abs().max() > 6e4 for f in feats):  # float16 range
        raise DivergenceError("the unlearned model's features overflow (non-finite or > 6e4): the run diverged; "
                              "lower the method's learning rate (methods.<name>.lr) and run again")
    arrays = {"feats": [f.cpu().numpy().astype(np.float16) for f in feats], "conf": extra["conf"]}
    return entry, arrays


EPOCH_RETAIN_SAMPLES = 500  # per-epoch retain accuracy: a strided subsample (a forward pass per epoch)


def epoch_probe(model: nn.Module, ev: EvalSet) -> dict:
    """Cheap per-epoch numbers: forget / retain accuracy and forget-split CKA to the original. Retain
    accuracy is read on every k-th sample of the retain subsample (at most EPOCH_RETAIN_SAMPLES, spread
    over all of it): it was most of this function's time, and the final evaluation
    measures the whole retain set."""
    out = {}
    for k in ("forget", "retain"):
        idx = ev.cka_idx[k]
        if k == "retain" and len(idx) > EPOCH_RETAIN_SAMPLES:
            idx = idx[::math.ceil(len(idx) / EPOCH_RETAIN_SAMPLES)]
        out[f"{k}_acc"] = _f(accuracy(predict(model, ev.x[idx]), ev.y[idx].cpu())) if len(idx) else None
    g = grams(model, ev, "forget")
    if g and ("original", "forget") in ev.ref_grams:
        out["cka_forget"] = cka_per_layer(g, ev.ref_grams[("original", "forget")], ev.points)
    return out


def avg_gap(m: dict, r: dict) -> float | None:
    """Mean |method - retrain| over UA, RA, TA and MIA-efficacy (OPTML's Avg. Gap)."""
    keys = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
    vals = [abs(m[k] - r[k]) for k in keys if m.get(k) is not None and r.get(k) is not None]
    return float(np.mean(vals)) if vals else None
