"""The baseline unlearning methods (recipes: METHODS.md section 3, OPTML-Group protocol).

Each class only says what loss to compute on a forget batch and a retain batch, plus hooks where
the method needs them (SalUn's mask, l1-sparse's decaying weight, Boundary Shrink's labels).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, ce, random_other_labels, register


@register("retrain")
class Retrain(Method):
    """Train from scratch on the retain set (also used, on all training data, for the original)."""
    uses_forget = False

    def loss(self, state, xf, yf, xr, yr):
        return ce(state.model, xr, yr), {}


@register("ft")
class FineTune(Method):
    """FT: cross-entropy on the retain set only (catastrophic forgetting of the rest)."""
    uses_forget = False

    def loss(self, state, xf, yf, xr, yr):
        return ce(state.model, xr, yr), {}


@register("ga")
class GradientAscent(Method):
    """GA: gradient ascent on the forget set, -CE(forget)."""
    uses_retain = False

    def loss(self, state, xf, yf, xr, yr):
        return -ce(state.model, xf, yf), {}


class _Joint(Method):
    """Methods that see retain and forget in every step; one epoch = one pass over retain,
    with the forget set covered once per epoch by proportionally sized forget batches."""

    @property
    def forget_batch(self):
        return self._fb

    def setup(self, state):  # called before the loop creates its batch streams
        self._fb = self.proportional_forget_batch(state)


@register("neggrad_plus")
class NegGradPlus(_Joint):
    """NegGrad+: alpha * CE(retain) - (1 - alpha) * CE(forget)."""

    def loss(self, state, xf, yf, xr, yr):
        a = self.hp.alpha
        lr_, lf = ce(state.model, xr, yr), ce(state.model, xf, yf)
        return a * lr_ - (1 - a) * lf, {"ce_retain": lr_.item(), "ce_forget": lf.item()}


@register("rl")
class RandomLabel(_Joint):
    """RL: forget samples relabelled at random (never their true class), retain with true labels."""

    def loss(self, state, xf, yf, xr, yr):
        x = torch.cat([xf, xr])
        y = torch.cat([random_other_labels(yf, state.num_classes), yr])
        return F.cross_entropy(state.model(x), y), {}


@register("l1_sparse")
class L1Sparse(Method):
    """l1-sparse: FT plus alpha_t * ||theta||_1, alpha_t decaying linearly to 0 over the epochs."""
    schedule_uses_epochs = True  # alpha_t depends on the total: an e-epoch prefix is not the e-epoch run
    uses_forget = False

    def loss(self, state, xf, yf, xr, yr):
        alpha_t = self.hp.alpha * (1 - state.epoch / max(1, state.epochs))
        l1 = sum(p.abs().sum() for p in state.model.parameters())
        loss_ce = ce(state.model, xr, yr)
        return loss_ce + alpha_t * l1, {"ce_retain": loss_ce.item()}


@register("salun")
class SalUn(RandomLabel):
    """SalUn: saliency mask from |grad of the forget loss| (top mask_ratio of weights, globally),
    then RL on the masked weights only. Masked-out weights are restored after every step, so
    neither weight decay nor momentum can move them."""

    def setup(self, state):
        super().setup(state)
        model = state.model
        model.eval()
        model.zero_grad(set_to_none=True)
        for chunk in state.forget_idx.split(256):
            x, y = state.x[chunk], state.y[chunk]
            (-F.cross_entropy(model(x), y, reduction="sum")).backward()
        grads = [p.grad.abs().flatten() for p in model.parameters()]
        flat = torch.cat(grads)
        k = max(1, int(self.hp.mask_ratio * flat.numel()))
        threshold = torch.topk(flat, k, sorted=True).values[-1]
        self.masks = [(p.grad.abs() >= threshold) for p in model.parameters()]
        self.frozen = [p.detach().clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        model.train()

    def after_backward(self, state):
        for p, m in zip(state.model.parameters(), self.masks):
            if p.grad is not None:
                p.grad.mul_(m)

    def after_step(self, state):
        with torch.no_grad():
            for p, m, f in zip(state.model.parameters(), self.masks, self.frozen):
                p.copy_(torch.where(m, p, f))


def _kl(student_logits, teacher_logits, t):
    """KL(teacher || student) of the temperature-softened distributions, times t^2 (Hinton's scaling),
    averaged over the batch: F.kl_div(log q_student, p_teacher) = sum p_teacher (log p_teacher - log q_student)."""
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1),
                    reduction="batchmean") * t * t


@register("scrub")
class Scrub(_Joint):
    """SCRUB: teacher = original, student = the model. During the first `max_epochs` epochs every
    step also ascends KL(teacher || student) on a forget batch (max-step); every step descends
    gamma * CE + alpha * KL(teacher || student) on a retain batch (min-step), both at `temperature`
    (`_kl`). Max- and min-steps are combined in one update per step instead of SCRUB's alternating
    passes (those are `scrub_alt`, engine/methods/scrub_alt.py), so the shared loop serves it too."""

    def loss(self, state, xf, yf, xr, yr):
        t = self.hp.temperature
        with torch.no_grad():
            tr = state.original(xr)
        out_r = state.model(xr)
        loss_min = self.hp.gamma * F.cross_entropy(out_r, yr) + self.hp.alpha * _kl(out_r, tr, t)
        logs = {"min": loss_min.item()}
        if state.epoch < self.hp.max_epochs:
            with torch.no_grad():
                tf = state.original(xf)
            loss_max = _kl(state.model(xf), tf, t)
            logs["max"] = loss_max.item()
            return loss_min - loss_max, logs
        return loss_min, logs


@register("boundary_shrink")
class BoundaryShrink(Method):
    """Boundary Shrink: FGSM (step `bound`) on the original finds each forget sample's nearest
    wrong class; fine-tune the forget samples towards it."""
    uses_retain = False

    def setup(self, state):
        orig = state.original
        labels = torch.empty_like(state.y)
        for chunk in state.forget_idx.split(256):
            x = state.x[chunk].clone().requires_grad_(True)
            y = state.y[chunk]
            loss = F.cross_entropy(orig(x), y)
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                logits = orig(x + self.hp.bound * grad.sign())
                logits[torch.arange(len(y)), y] = -torch.inf  # the nearest *wrong* label
                labels[chunk] = logits.argmax(1)
        self.neighbour = labels

    def loss(self, state, xf, yf, xr, yr):
        return F.cross_entropy(state.model(xf), self.neighbour[state.forget_batch_idx]), {}
