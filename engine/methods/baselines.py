"""The baseline unlearning methods (recipes: METHODS.md section 3, OPTML-Group protocol).

Each class only says what loss to compute on a forget batch and a retain batch, plus hooks where
the method needs them (SalUn's mask, l1-sparse's decaying weight, Boundary Shrink's labels).
Each method's hyperparameter class sits above it and its card (engine.methods.base.MethodInfo) is
given where it registers.

Recipes. A class's defaults are the digits recipe, tuned with bench/tune_recipes.py under one rule
for every method: among the settings that reach logit-level forgetting (forget accuracy within 0.05
of the retrained model's), keep the one with the highest retain accuracy. "teach" recipes:
bench/tune_recipes.py --preset teach (class 3, seed 0) under the same rule (grids and results in the
README, "How the teach recipes were chosen"). "fashion" recipes: the settings calibration chose under
the same rule (engine/calibrate.py, `--calibrate on`, grid around the teach recipes) on the
fashion-mnist preset's default scenario (README, Fashion-MNIST). "optml" recipes: OPTML-Group's CIFAR-10 / ResNet-18
recipes (METHODS.md section 3), batch 256 throughout, used by the CIFAR presets.
"""
from __future__ import annotations

from pydantic import Field

from ..hparams import MethodConfig, epochs_field, lr_field
from ..lazy import F, torch
from .base import Method, MethodInfo, ce, random_other_labels, register


def optml(**recipe) -> dict:
    """An OPTML-Group CIFAR recipe (batch 256 throughout)."""
    return {**recipe, "batch_size": 256}


# retrain is the reference row of every comparison and uses the preset's `train` recipe (its section
# is a placeholder; no plug-in: it never sees the forget set)
@register("retrain", MethodInfo("Retrain", "#222222", 0, pluggable=False, form_knobs=(), in_default_compare=False))
class Retrain(Method):
    """Train from scratch on the retain set (also used, on all training data, for the original)."""
    uses_forget = False

    def loss(self, state, xf, yf, xr, yr):
        return ce(state.model, xr, yr), {}


class FTConfig(MethodConfig):
    # at lr 0.01-0.1 FT never forgot class 3 on digits (forget acc 1.0); lr 0.3 for 10 epochs does
    epochs: int = epochs_field(10)
    lr: float = lr_field(0.3)


@register("ft", MethodInfo("FT", "#4e79a7", 10, FTConfig,
                           {"teach": {"epochs": 5, "lr": 0.1}, "fashion": {"epochs": 5, "lr": 0.1 / 3},
                            "optml": optml(epochs=10, lr=0.01)}))
class FineTune(Method):
    """FT: cross-entropy on the retain set only (catastrophic forgetting of the rest)."""
    uses_forget = False

    def loss(self, state, xf, yf, xr, yr):
        return ce(state.model, xr, yr), {}


class GAConfig(MethodConfig):
    lr: float = lr_field(0.003)  # 0.01 broke the model (retain 0.63), 0.001 did not forget


@register("ga", MethodInfo("GA", "#f28e2b", 20, GAConfig,
                           {"teach": {"epochs": 3, "lr": 0.001}, "fashion": {"epochs": 2, "lr": 0.003},
                            "optml": optml(epochs=5, lr=1e-4)}))
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


class NegGradPlusConfig(MethodConfig):
    alpha: float = Field(0.95, gt=0, lt=1)  # weight of the retain CE; (1 - alpha) on -CE(forget)


@register("neggrad_plus", MethodInfo("NegGrad+", "#76b7b2", 30, NegGradPlusConfig,
                         {"teach": {"epochs": 5, "lr": 0.003}, "fashion": {"epochs": 5, "lr": 0.003 * 3},
                          "optml": optml(epochs=5, lr=0.01, alpha=0.99)}))
class NegGradPlus(_Joint):
    """NegGrad+: alpha * CE(retain) - (1 - alpha) * CE(forget)."""

    def loss(self, state, xf, yf, xr, yr):
        a = self.hp.alpha
        lr_, lf = ce(state.model, xr, yr), ce(state.model, xf, yf)
        return a * lr_ - (1 - a) * lf, {"ce_retain": lr_.item(), "ce_forget": lf.item()}


@register("rl", MethodInfo("RL", "#59a14f", 40, MethodConfig,
                           {"teach": {"epochs": 5, "lr": 0.003}, "fashion": {"epochs": 5, "lr": 0.003},
                            "optml": optml(epochs=10, lr=0.01)}))
class RandomLabel(_Joint):
    """RL: forget samples relabelled at random (never their true class), retain with true labels."""

    def loss(self, state, xf, yf, xr, yr):
        x = torch.cat([xf, xr])
        y = torch.cat([random_other_labels(yf, state.num_classes), yr])
        return F.cross_entropy(state.model(x), y), {}


class L1SparseConfig(MethodConfig):
    epochs: int = epochs_field(10)
    lr: float = lr_field(0.3)  # as FT, which it extends
    alpha: float = Field(1e-4, ge=0, le=1)  # initial L1 weight, decays linearly to 0


@register("l1_sparse", MethodInfo("ℓ1-sparse", "#c9a227", 50, L1SparseConfig,
                         {"teach": {"epochs": 5, "lr": 0.1}, "fashion": {"epochs": 5, "lr": 0.1 / 3},
                          "optml": optml(epochs=10, lr=0.01, alpha=1e-4)}))
class L1Sparse(Method):
    """l1-sparse: FT plus alpha_t * ||theta||_1, alpha_t decaying linearly to 0 over the epochs."""
    schedule_uses_epochs = True  # alpha_t depends on the total: an e-epoch prefix is not the e-epoch run
    uses_forget = False

    def loss(self, state, xf, yf, xr, yr):
        alpha_t = self.hp.alpha * (1 - state.epoch / max(1, state.epochs))
        l1 = sum(p.abs().sum() for p in state.model.parameters())
        loss_ce = ce(state.model, xr, yr)
        return loss_ce + alpha_t * l1, {"ce_retain": loss_ce.item()}


class SalUnConfig(MethodConfig):
    mask_ratio: float = Field(0.5, gt=0, le=1)  # share of weights (highest saliency) updated


@register("salun", MethodInfo("SalUn", "#b07aa1", 60, SalUnConfig,
                              {"teach": {"epochs": 5, "lr": 0.003}, "fashion": {"epochs": 5, "lr": 0.003},
                               "optml": optml(epochs=10, lr=0.01)}))
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


class ScrubConfig(MethodConfig):
    lr: float = lr_field(0.001)  # 0.01 collapsed the model (retain 0.18)
    temperature: float = Field(4.0, gt=0, le=100)
    max_epochs: int = Field(1, ge=0, le=1000)  # epochs (from the start) that also do max-steps
    gamma: float = Field(1.0, ge=0, le=100)  # weight of retain CE in min-steps
    alpha: float = Field(1.0, ge=0, le=100)  # weight of retain KL in min-steps


@register("scrub", MethodInfo("SCRUB", "#ff9da7", 70, ScrubConfig,
                    {"teach": {"epochs": 10, "lr": 0.001}, "fashion": {"epochs": 2, "lr": 0.001},
                     "optml": optml(epochs=5, lr=5e-4, max_epochs=2)}))
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


class BoundaryShrinkConfig(MethodConfig):
    bound: float = Field(0.1, gt=0, le=10)  # FGSM step size in input space


@register("boundary_shrink", MethodInfo("Boundary shrink", "#9c755f", 80, BoundaryShrinkConfig,
                              {"teach": {"epochs": 3, "lr": 0.003}, "fashion": {"epochs": 3, "lr": 0.003},
                               "optml": optml(epochs=5, lr=1e-5)}))
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
