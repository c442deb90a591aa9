"""Unit tests of the engine's science: the contrastive loss, every method in the shared loop,
feature taps, configuration errors."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from engine.config import ConfigError, apply_sets, make_config, validate
from engine.events import CollectingContext, DivergenceError
from engine.methods import build_method, create_method, method_names
from engine.methods.ec.loss import contrastive_unlearning_loss
from engine.methods.ec.aux import AuxModules
from engine.models import FeatureTaps, create_model, model_names, point_channels
from engine.training import LoopState, run_loop


# -- contrastive unlearning loss -----------------------------------------------------------------

def _unit(*v):
    t = torch.tensor(v, dtype=torch.float32)
    return t / t.norm()


def test_cu_loss_value_matches_hand_computation():
    zf = torch.stack([_unit(1, 0)])
    zr = torch.stack([_unit(1, 0), _unit(0, 1), _unit(-1, 0)])
    yf, yr = torch.tensor([0]), torch.tensor([0, 1, 2])
    tau = 0.5
    s = (zf @ zr.T / tau)[0]  # [2, 0, -2]
    lse_pos = s[0]  # one positive
    expected = -((s[1] - lse_pos) + (s[2] - lse_pos)) / 2
    got = contrastive_unlearning_loss(zf, yf, zr, yr, tau)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    assert got.item() == pytest.approx(3.0, abs=1e-6)  # -((0 - 2) + (-2 - 2)) / 2
    # no positives (class-wise forgetting): the log term is 0, loss = -mean_a s_ia
    got_nopos = contrastive_unlearning_loss(zf, yf, zr[1:], yr[1:], tau)
    assert got_nopos.item() == pytest.approx(-(s[1] + s[2]).item() / 2, abs=1e-6)


def test_cu_loss_gradient_pulls_towards_other_classes_and_away_from_own():
    zf = torch.tensor([[0.6, 0.8]], requires_grad=True)
    zr = torch.stack([_unit(0.8, 0.6), _unit(-0.6, 0.8)])  # same class, other class
    yf, yr = torch.tensor([3]), torch.tensor([3, 5])
    loss = contrastive_unlearning_loss(zf, yf, zr, yr, tau=0.7)
    loss.backward()
    step = -zf.grad[0]  # gradient descent direction
    assert torch.dot(step, zr[1]) > 0  # towards the other-class retain embedding
    assert torch.dot(step, zr[0]) < 0  # away from its own class


def test_cu_loss_is_finite_at_low_temperature_and_without_negatives():
    zf = F.normalize(torch.randn(8, 16), dim=1)
    zr = F.normalize(torch.randn(32, 16), dim=1)
    yf = torch.zeros(8, dtype=torch.long)
    yr = torch.randint(0, 4, (32,))
    assert math.isfinite(contrastive_unlearning_loss(zf, yf, zr, yr, tau=0.01).item())
    same = torch.zeros(32, dtype=torch.long)  # every retain sample shares the label: no negatives
    assert contrastive_unlearning_loss(zf, yf, zr, same, tau=0.5).item() == 0.0


# -- models and taps -----------------------------------------------------------------------------

# every registered architecture at its smallest input, and the small CNN also at MNIST's 28 px
@pytest.mark.parametrize("arch,size,ch", [(a, 8, 1) if a == "small_cnn" else (a, 32, 3) for a in model_names()]
                         + [("small_cnn", 28, 1)])
def test_models_expose_supervision_points_and_taps_are_removed(arch, size, ch):
    model = create_model(arch, 10, ch, size)
    x = torch.randn(2, ch, size, size)
    with FeatureTaps(model) as taps:
        out = model(x)
    assert out.shape == (2, 10)
    assert list(taps.features) == model.supervision_points
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert len(point_channels(model, x)) == len(model.supervision_points)


def test_taps_are_removed_when_forward_raises():
    model = create_model("small_cnn", 10, 1, 8)
    with pytest.raises(RuntimeError):
        with FeatureTaps(model):
            model(torch.randn(2, 3, 8, 8))  # wrong channel count
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


# -- every method through the shared loop ------------------------------------------------------

def _tiny_state(cfg, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(96, 1, 8, 8)
    y = torch.arange(96) % 4
    x += y[:, None, None, None].float() * 0.5  # a little signal per class
    model = create_model("small_cnn", 4, 1, 8, width=8)
    forget = torch.nonzero(y == 1).squeeze(1)
    retain = torch.nonzero(y != 1).squeeze(1)
    original = copy.deepcopy(model).eval()
    aux = AuxModules(model.supervision_points, point_channels(model, x), 4, 16)
    return LoopState(model=model, x=x, y=y, forget_idx=forget, retain_idx=retain, num_classes=4,
                     device=torch.device("cpu"), original=original, extra={"aux": aux})


def _tiny_cfg(**sets):
    raw = apply_sets({"model": {"width": 8}}, [f"{k}={v}" for k, v in sets.items()])
    for m in method_names():
        raw.setdefault("methods", {}).setdefault(m, {}).update({"batch_size": 16, "epochs": 2})
    return make_config("digits", raw)


@pytest.mark.parametrize("name", [m for m in method_names()])
def test_every_method_runs_a_few_steps(name):
    cfg = _tiny_cfg()
    state = _tiny_state(cfg)
    before = [p.detach().clone() for p in state.model.parameters()]
    method = create_method(name, cfg)
    ctx = CollectingContext()
    state.job = ctx
    history = run_loop(method, state, epochs=2, lr=0.01, momentum=0.9, weight_decay=5e-4, run_name=name)
    assert len(history) == 2
    assert all(math.isfinite(h["losses"]["loss"]) for h in history)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, state.model.parameters()))
    assert changed > 0, f"{name} changed no weight"
    assert [e["epoch"] for e in ctx.events if e["type"] == "epoch"] == [1, 2]


def test_progress_events_carry_the_epoch_and_the_total(monkeypatch):
    """The progress bar says "epoch n of N" from the newest event (dashboard/progress.py): the step
    events within an epoch carry the total too, and so do the auxiliary modules' stage events."""
    import itertools
    import types
    from engine import training
    from engine.methods.ec.aux import pretrain_aux
    clock = itertools.count(0.0, 1.0)  # every step is 0.5 s past the last report: each one reports
    monkeypatch.setattr(training, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    cfg = _tiny_cfg()
    state = _tiny_state(cfg)
    state.job = ctx = CollectingContext()
    run_loop(create_method("ft", cfg), state, epochs=2, lr=0.01, momentum=0.9, weight_decay=5e-4, run_name="ft")
    steps = [e for e in ctx.events if e["type"] == "step"]
    assert steps and {(e["epoch"], e["epochs"]) for e in steps} == {(1, 2), (2, 2)}
    ctx = CollectingContext()
    pretrain_aux(state.original, state.x, state.y, 4, 16, epochs=2, lr=0.01, job=ctx)
    assert [(e["epoch"], e["epochs"]) for e in ctx.events if e.get("stage") == "aux"] == [(1, 2), (2, 2)]


def test_salun_leaves_masked_out_weights_exactly_unchanged():
    cfg = _tiny_cfg(**{"methods.salun.mask_ratio": 0.3})
    state = _tiny_state(cfg)
    before = [p.detach().clone() for p in state.model.parameters()]
    method = create_method("salun", cfg)
    run_loop(method, state, epochs=3, lr=0.05, momentum=0.9, weight_decay=5e-3)
    moved = frozen_kept = 0
    for p, b, m in zip(state.model.parameters(), before, method.masks):
        assert torch.equal(p[~m], b[~m]), "a masked-out weight moved"
        frozen_kept += int((~m).sum())
        moved += int((p[m] != b[m]).sum())
    assert frozen_kept > 0 and moved > 0
    total = sum(m.numel() for m in method.masks)
    assert sum(int(m.sum()) for m in method.masks) == pytest.approx(0.3 * total, rel=0.05)


def test_ec_plugin_adds_beta_times_the_ec_loss_to_any_base_method():
    losses = {}
    for beta in (0.5, 2.0):
        cfg = _tiny_cfg(plugin="ec", method="ft", beta=beta)
        method, (plugin,) = build_method(cfg)
        assert f"{method.name}+{plugin.name}" == "ft+ec"
        state = _tiny_state(cfg)
        method.setup(state)
        plugin.setup(state)
        xf, yf = state.batch(state.forget_idx[:8])
        xr, yr = state.batch(state.retain_idx[:16])
        torch.manual_seed(0)
        base, _ = method.loss(state, xf, yf, xr, yr)
        extra, _ = plugin.loss(state, xf, yf, xr, yr)
        loss, logs = base + extra, {"base": base.item()}  # the loop's sum (engine.training.run_loop)
        losses[beta] = (loss.item(), logs["base"])
    (l1, base1), (l2, base2) = losses[0.5], losses[2.0]
    assert base1 == pytest.approx(base2, rel=1e-5)
    ec = (l2 - l1) / 1.5
    assert abs(ec) > 1e-3 and l1 == pytest.approx(base1 + 0.5 * ec, rel=1e-5)


def test_ec_does_not_train_the_shared_pretrained_modules_in_place():
    cfg = _tiny_cfg()
    state = _tiny_state(cfg)
    aux_before = [p.detach().clone() for p in state.extra["aux"].parameters()]
    run_loop(create_method("ec", cfg), state, epochs=1, lr=0.05, momentum=0.9, weight_decay=0.0)
    assert all(torch.equal(a, b) for a, b in zip(aux_before, state.extra["aux"].parameters()))


def test_ec_layer_weights_select_supervision_points():
    cfg = _tiny_cfg(**{"ec.weights": "0,0,1,0"})
    state = _tiny_state(cfg)
    history = run_loop(create_method("ec", cfg), state, epochs=1, lr=0.01, momentum=0.9, weight_decay=0.0)
    keys = [k for k in history[0]["losses"] if k.startswith("cu/")]
    assert keys == ["cu/block3"]


def test_diverging_loss_raises_a_clear_error():
    cfg = _tiny_cfg()
    state = _tiny_state(cfg)
    with pytest.raises(DivergenceError, match="lower the learning rate"):
        run_loop(create_method("ga", cfg), state, epochs=50, lr=1e6, momentum=0.9, weight_decay=0.0)


# -- configuration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sets,option,fragment", [
    (["ec.tau=-1"], "ec.tau", "greater than 0"),
    (["ec.tau=0"], "ec.tau", "greater than 0"),
    (["ec.weights=0,0,0,0"], "ec.weights", "all zero"),
    (["ec.weights=1,1"], "ec.weights", "4 supervision points"),
    (["forget.classes=[12]"], "forget.classes", "do not exist"),
    (["forget.classes=[]"], "forget.classes", "empty"),
    (["forget.random=1.5"], "forget.random", "less than 1"),
    (["methods.ga.lr=-0.1"], "methods.ga.lr", "greater than 0"),
    (["methods.ga.foo=1"], "methods.ga.foo", "unknown option"),
    (["method=nope"], "method", "unknown method"),
])  # plugin=ec on method=ec is refused for a single run only: tests/test_catalog.py
def test_config_errors_name_the_option(sets, option, fragment):
    with pytest.raises(ConfigError) as err:
        make_config("digits", apply_sets({}, sets))
    assert err.value.option == option
    assert fragment in str(err.value)


def test_config_forget_defaults_and_roundtrip():
    cfg = make_config("digits")
    assert cfg.forget.classes == [3] and cfg.layer_weights == [1.0] * 4
    again = validate(cfg.model_dump())
    assert again == cfg
    rnd = make_config("digits", {"forget": {"random": 0.1}})
    assert rnd.forget.classes is None and rnd.forget.random == 0.1
