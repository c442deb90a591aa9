"""SCRUB with its original alternating schedule (Kurmanji et al. 2023, "Towards Unbounded Machine
Unlearning", NeurIPS; the authors' code: github.com/meghdadk/SCRUB).

Teacher = the original model, student = the model being unlearned. In each epoch:
  * while epoch < max_epochs, first one pass over the forget set of max-steps, each ascending
    KL(teacher || student) on a forget batch;
  * then one pass over the retain set of min-steps, each descending
    gamma * CE + alpha * KL(teacher || student) on a retain batch.
Both KL terms are at temperature `temperature`, times its square (`baselines._kl`, the authors'
DistillKL). After max_epochs only the min pass remains. One SGD optimiser serves both kinds of step,
as in the authors' code (`train_distill` "maximize" then "minimize", `epoch <= msteps`).

Recipe (ScrubAltConfig below): the authors' class-forgetting setting in
large_scale_unlearning.ipynb (msteps 2 of 3 epochs, gamma 0.99, alpha 0.001, kd_T 4, SGD with
momentum 0.9 and weight decay 5e-4; lr 5e-4, kept for the CIFAR presets). On digits the lr is
tuned like every digits recipe (0.003). Measured on digits (class 3, forget accuracy on the forget
training split after epochs 1, 2, 3; retrain 0.0): this recipe 0.60, 0.00, 0.00; with scrub's alpha 1
and gamma 1 0.91, 0.00, 0.56 (the min-only third epoch distils the teacher's soft outputs back);
with one max-epoch 0.60, 0.53, 0.54. scrub's recipe (alpha 1, one max-epoch, lr 0.001) left forget
accuracy at 1.0 on digits class 5 at every lr x epochs calibration tried.

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

Calibration (engine/calibrate.py) scores the prefixes of one run per learning rate: nothing here
depends on the total epoch count (the max passes stop at `max_epochs`, an absolute epoch, and the
batch order is seeded), so the model after e epochs of an E-epoch run is the e-epoch run.
"""
from __future__ import annotations

import math

from pydantic import Field

from ..hparams import epochs_field, lr_field
from ..lazy import F, torch
from .base import Method, MethodInfo, register
from .baselines import ScrubConfig, _kl, optml


class ScrubAltConfig(ScrubConfig):
    """The SCRUB authors' class-forgetting recipe (meghdadk/SCRUB, large_scale_unlearning.ipynb:
    msteps 2 of 3 epochs, gamma 0.99, alpha 0.001, kd_T 4, SGD). scrub's recipe (alpha 1, 1 max-epoch)
    did not forget with these passes (digits class 5, calibrated: forget 0.669 at best, retrain 0.0).
    lr tuned on digits (class 3, seed 0) under the digits rule: the authors' 5e-4 left forget accuracy
    at 1.0 and 0.001 at 0.964; 0.003 reached 0.000 with retain 1.000 (the measurements: above)."""
    epochs: int = epochs_field(3)
    lr: float = lr_field(0.003)
    max_epochs: int = Field(2, ge=0, le=1000)  # epochs (from the start) that begin with a max pass
    gamma: float = Field(0.99, ge=0, le=100)  # weight of retain CE in min-steps
    alpha: float = Field(0.001, ge=0, le=100)  # weight of retain KL in min-steps


CARD = MethodInfo(
    "SCRUB (alternating)", "#d37295", 75, ScrubAltConfig,
    recipes={"teach": {"epochs": 3, "lr": 0.003},  # forget 0.000, retain 1.000 (lr 0.001 left forget at 0.077)
             "optml": optml(epochs=3, lr=5e-4, max_epochs=2)},  # the SCRUB authors' CIFAR-10 recipe
    in_default_compare=False)  # opt-in: the default comparison's time stays as it was


def _one_pass(idx: "torch.Tensor", n_batches: int, gen: "torch.Generator") -> tuple["torch.Tensor", ...]:
    """`idx` shuffled and cut into `n_batches` batches of (almost) equal size: no tiny last batch."""
    if n_batches == 0:
        return ()
    perm = torch.randperm(len(idx), generator=gen).to(idx.device)
    return idx[perm].tensor_split(n_batches)


@register("scrub_alt", CARD)
class ScrubAlternating(Method):
    """SCRUB, alternating: a max pass on forget, then a min pass on retain (module docstring)."""
    forget_batch = None  # no loop streams: the method draws its own exact passes
    retain_batch = None
    schedule_uses_epochs = False  # prefixes are exact (module docstring, "Calibration")

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
