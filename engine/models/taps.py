"""Feature taps: the outputs of a model's supervision points, captured with forward hooks that are
always removed, even when the forward pass raises."""
from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import nn


def point_channels(model: nn.Module, sample: torch.Tensor) -> list[int]:
    """Channel (or token) dimension at each supervision point, found with one forward pass."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FeatureTaps(model) as taps:
        model(sample[:2])
    model.train(was_training)
    return [pool(taps.features[p]).shape[1] for p in model.supervision_points]


def pool(t: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) -> global average pool (n, C); (n, T, D) tokens -> mean (n, D); (n, d) as is."""
    if t.dim() == 4:
        return t.mean(dim=(2, 3))
    if t.dim() == 3:
        return t.mean(dim=1)
    return t.flatten(1)


class FeatureTaps(AbstractContextManager):
    """`with FeatureTaps(model) as taps: model(x)` -> taps.features[name] for each supervision point.
    Hooks are removed on exit, whatever happens inside."""

    def __init__(self, model: nn.Module, names: list[str] | None = None, detach: bool = False):
        self.model = model
        self.names = list(names if names is not None else model.supervision_points)
        self.detach = detach
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self):
        modules = dict(self.model.named_modules())
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name):
        def fn(_module, _inp, out):
            self.features[name] = out.detach() if self.detach else out
        return fn

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False

    def ordered(self) -> list[torch.Tensor]:
        return [self.features[n] for n in self.names]
