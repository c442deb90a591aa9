"""The one training/unlearning loop. Methods plug in through `engine.methods.base.Method` hooks;
anything that rides along with a method (a loss term added to it, a per-epoch measurement, a clock)
is a `Plugin` (the Avalanche pattern: the loop calls every plugin's hooks after the method's).

Training the original model, retraining the oracle and every unlearning method run through
`run_loop`. Data lives on the device as tensors; batches are drawn by index, which is fast for
the small default data sets and keeps the loop free of DataLoader machinery.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .events import DivergenceError, JobContext
from .methods.base import Plugin  # noqa: F401 - the loop's hook class (torch-free, beside Method)


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then MPS, then CPU; a requested device that is absent is an error, not a fallback."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but no CUDA GPU is visible; use --device cpu or auto")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device: mps was requested but is not available; use --device cpu or auto")
    return torch.device(requested)


def augment_batch(x: torch.Tensor) -> torch.Tensor:
    """Random crop (pad 4) and horizontal flip, per sample, on the device."""
    b, c, h, w = x.shape
    flip = torch.rand(b, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    xp = F.pad(x, (4, 4, 4, 4))
    i = torch.randint(0, 9, (b,), device=x.device)
    j = torch.randint(0, 9, (b,), device=x.device)
    rows = (i[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (j[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return xp[torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


class _Stream:
    """Endless shuffled batches of indices from one index set (reshuffled every pass)."""

    def __init__(self, idx: torch.Tensor, batch: int, gen: torch.Generator):
        self.idx, self.batch, self.gen = idx, max(1, min(batch, len(idx))), gen
        self._order, self._pos = None, len(idx)

    def next(self) -> torch.Tensor:
        if self._pos + self.batch > len(self.idx):
            perm = torch.randperm(len(self.idx), generator=self.gen)
            self._order, self._pos = self.idx[perm.to(self.idx.device)], 0
        out = self._order[self._pos:self._pos + self.batch]
        self._pos += self.batch
        return out


@dataclass
class LoopState:
    """What a method's hooks can see: the model being trained, data, references, progress."""
    model: nn.Module
    x: torch.Tensor  # the whole pool, on the device
    y: torch.Tensor
    forget_idx: torch.Tensor
    retain_idx: torch.Tensor
    num_classes: int
    device: torch.device
    job: JobContext = field(default_factory=JobContext)
    original: nn.Module | None = None  # frozen copy of the original model
    augment: bool = False
    epoch: int = 0
    step: int = 0
    epochs: int = 1
    extra: dict = field(default_factory=dict)  # per-method state
    forget_batch_idx: torch.Tensor | None = None  # pool indices of the current batches
    retain_batch_idx: torch.Tensor | None = None
    stop: bool = False  # set by an epoch hook to end the run after this epoch (calibration's early stop)
    losses: dict = field(default_factory=dict)  # the epoch's mean losses, set before the after_epoch hooks

    def batch(self, idx: torch.Tensor | None):
        if idx is None:
            return None, None
        x = self.x[idx]
        if self.augment:
            x = augment_batch(x)
        return x, self.y[idx]


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA; a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _batch_size(method, plugins, stream: str):
    """The method's batch size for a stream; its hp.batch_size where only a plugin's loss draws from it."""
    size = getattr(method, f"{stream}_batch")
    if not size and any(stream in p.streams for p in plugins):
        size = method.hp.batch_size
    return size


def run_loop(method, state: LoopState, *, epochs: int, lr: float, momentum: float, weight_decay: float,
             schedule: str = "constant", seed: int = 0, run_name: str = "", plugins=()) -> list[dict]:
    """Train `state.model` with `method` and `plugins` for `epochs`; return per-epoch history rows.

    `method` supplies: forget_batch / retain_batch sizes (None: stream unused), steps_per_epoch(),
    loss(state, xf, yf, xr, yr) -> (loss, logs), and optional hooks setup, parameters, before_step,
    after_backward, after_step, after_epoch, teardown. Each `Plugin` hook runs after the method's;
    a plugin's loss adds to the method's (the row's losses then log the method's own as "base"),
    its after_epoch fields join the history row, which is emitted as an "epoch" event. The method's
    and every plugin's teardown run however the loop ends (a divergence, a cancelled job).
    """
    plugins = list(plugins)
    ended = False
    try:
        history = _loop(method, plugins, state, epochs, lr, momentum, weight_decay, schedule, seed, run_name)
        ended = True
        return history
    finally:
        _teardown([method, *plugins], state, loop_failed=not ended)


def _teardown(hooks: list, state: LoopState, loop_failed: bool) -> None:
    """Every teardown runs, also when one raises. The first teardown error is raised after them all,
    unless the loop itself failed: its error is the one the caller sees (a teardown's is logged)."""
    errors = []
    for obj in hooks:
        try:
            obj.teardown(state)
        except Exception as err:  # noqa: BLE001 - raised or logged below, once the others have run
            errors.append((obj, err))
    if errors and not loop_failed:
        raise errors[0][1]
    for obj, err in errors:
        state.job.emit({"type": "log",
                        "message": f"{type(obj).__name__}.teardown failed after the loop's error: {err}"})


def _loop(method, plugins: list[Plugin], state: LoopState, epochs: int, lr: float, momentum: float,
          weight_decay: float, schedule: str, seed: int, run_name: str) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    state.epochs = epochs
    method.setup(state)
    for p in plugins:
        p.setup(state)
    params = list(method.parameters(state))
    for p in plugins:
        params += list(p.parameters(state))
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    fb, rb = _batch_size(method, plugins, "forget"), _batch_size(method, plugins, "retain")
    forget = _Stream(state.forget_idx, fb, gen) if fb and len(state.forget_idx) else None
    retain = _Stream(state.retain_idx, rb, gen) if rb and len(state.retain_idx) else None
    steps = method.steps_per_epoch(state)
    history: list[dict] = []
    last_emit = 0.0
    for epoch in range(epochs):
        state.epoch = epoch
        if schedule == "cosine":
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        state.model.train()
        sums: dict[str, float] = {}
        for step in range(steps):
            state.step = step
            state.job.check()
            state.forget_batch_idx = forget.next() if forget else None
            state.retain_batch_idx = retain.next() if retain else None
            xf, yf = state.batch(state.forget_batch_idx)
            xr, yr = state.batch(state.retain_batch_idx)
            method.before_step(state)
            for p in plugins:
                p.before_step(state)
            with autocast(state.device):
                loss, logs = method.loss(state, xf, yf, xr, yr)
                base = loss
                for p in plugins:
                    extra = p.loss(state, xf, yf, xr, yr)
                    if extra is not None:
                        loss = loss + extra[0]
                        logs = {**logs, **extra[1]}
                if loss is not base:  # a plugin added to it: the method's own loss is logged as "base"
                    logs["base"] = base.item()
            if not torch.isfinite(loss):
                raise DivergenceError(
                    f"{run_name or method.name}: loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                    f"lower the learning rate (methods.{method.name}.lr) or the loss weights and run again")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            method.after_backward(state)
            for p in plugins:
                p.after_backward(state)
            opt.step()
            method.after_step(state)
            for p in plugins:
                p.after_step(state)
            logs = {"loss": loss.item(), **{k: float(v) for k, v in logs.items()}}
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            now = time.monotonic()
            if now - last_emit > 0.5:
                last_emit = now
                state.job.emit({"type": "step", "run": run_name, "epoch": epoch + 1, "epochs": epochs, "step": step + 1,
                                "steps": steps, "loss": logs["loss"],
                                "fraction": (epoch + (step + 1) / steps) / epochs})
        method.after_epoch(state)
        row = {"epoch": epoch + 1, "losses": {k: v / steps for k, v in sums.items()}}
        state.losses = row["losses"]
        for p in plugins:
            row.update(p.after_epoch(state) or {})
        history.append(row)
        state.job.emit({"type": "epoch", "run": run_name, "epochs": epochs, "fraction": (epoch + 1) / epochs, **row})
        if state.stop:
            break
    return history
