"""SCRUB with its original alternating schedule (Kurmanji et al. 2023, "Towards Unbounded Machine
Unlearning").

Teacher = the original model, student = the model being unlearned. In each epoch:
  * while epoch < max_epochs, first one pass over the forget set of max-steps, each ascending
    KL(teacher || student) on a forget batch;
  * then one pass over the retain set of min-steps, each descending
    gamma * CE + alpha * KL(teacher || student) on a retain batch.
After max_epochs only the min pass remains. One SGD optimiser serves both kinds of step, as in the
authors' code.

How it differs from `scrub` (engine/methods/baselines.py): `scrub` adds a max-step and a min-step
into one update on a (forget, retain) batch pair, with the forget set spread thinly over the retain
pass by small forget batches. Here they are separate updates on full batches, in sequence: the
student first moves away from the teacher on the whole forget set, then the retain pass repairs
what that did to the retain set.

How it fits the shared loop, which runs the same number of steps in every epoch: an epoch has
F + R steps (F forget batches, R retain batches). Past max_epochs the F forget-phase steps are
skipped: their loss is a constant, so no weight gets a gradient and SGD leaves weights and momentum
alone; the history's per-epoch loss averages count those steps as zero. Batches come from one
shuffled pass over each set per epoch, not from the loop's endless streams, so every pass is exact.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Method, register
from .baselines import _kl


def _one_pass(idx: torch.Tensor, n_batches: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """`idx` shuffled and cut into `n_batches` batches of (almost) equal size: no tiny last batch."""
    if n_batches == 0:
        return ()
    perm = torch.randperm(len(idx), generator=gen).to(idx.device)
    return idx[perm].tensor_split(n_batches)


@register("scrub_alt")
class ScrubAlternating(Method):
    """SCRUB, alternating: a max pass on forget, then a min pass on retain (module docstring)."""
    forget_batch = None  # no loop streams: the method draws its own exact passes
    retain_batch = None

    def setup(self, state):
        b = self.hp.batch_size
        has_max = self.hp.max_epochs > 0 and len(state.forget_idx) > 0
        self.n_forget = math.ceil(len(state.forget_idx) / b) if has_max else 0
        self.n_retain = max(1, math.ceil(len(state.retain_idx) / b))
        self.gen = torch.Generator().manual_seed(self.cfg.seed)

    def steps_per_epoch(self, state):
        return self.n_forget + self.n_retain

    def before_step(self, state):
        if state.step == 0:  # a new epoch: fresh passes over both sets
            self.forget_batches = _one_pass(state.forget_idx, self.n_forget, self.gen)
            self.retain_batches = _one_pass(state.retain_idx, self.n_retain, self.gen)

    def loss(self, state, xf, yf, xr, yr):
        t = self.hp.temperature
        if state.step < self.n_forget:
            if state.epoch >= self.hp.max_epochs:  # max pass over: a step that changes nothing
                return torch.zeros((), device=state.device, requires_grad=True), {}
            x, _ = state.batch(self.forget_batches[state.step])
            with torch.no_grad():
                teacher = state.original(x)
            loss_max = _kl(state.model(x), teacher, t)
            return -loss_max, {"max": loss_max.item()}
        x, y = state.batch(self.retain_batches[state.step - self.n_forget])
        with torch.no_grad():
            teacher = state.original(x)
        out = state.model(x)
        loss_min = self.hp.gamma * F.cross_entropy(out, y) + self.hp.alpha * _kl(out, teacher, t)
        return loss_min, {"min": loss_min.item()}
