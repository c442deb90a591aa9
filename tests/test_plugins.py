"""Loop plugins (engine.training.Plugin): their hooks, the EC plug-in as one, plug-ins in run and
compare jobs, and the generic code's independence from the EC package."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch

from engine.config import apply_sets, make_config
from engine.events import CollectingContext, DivergenceError
from engine.methods import build_method, create_method, extras, method_names
from engine.methods.base import Method
from engine.methods.ec.aux import AuxModules
from engine.methods.ec.method import EC
from engine.models import create_model, point_channels
from engine.training import LoopState, Plugin, run_loop

ROOT = Path(__file__).resolve().parent.parent


def _state(augment: bool = False) -> LoopState:
    torch.manual_seed(0)
    x = torch.randn(96, 1, 8, 8)
    y = torch.arange(96) % 4
    x += y[:, None, None, None].float() * 0.5
    model = create_model("small_cnn", 4, 1, 8, width=8)
    aux = AuxModules(model.supervision_points, point_channels(model, x), 4, 16)
    return LoopState(model=model, x=x, y=y, forget_idx=torch.nonzero(y == 1).squeeze(1),
                     retain_idx=torch.nonzero(y != 1).squeeze(1), num_classes=4, device=torch.device("cpu"),
                     original=copy.deepcopy(model).eval(), extra={"aux": aux}, augment=augment)


def _cfg(**sets):
    raw = apply_sets({"model": {"width": 8}}, [f"{k}={v}" for k, v in sets.items()])
    for m in method_names():
        raw.setdefault("methods", {}).setdefault(m, {}).update({"batch_size": 16, "epochs": 2})
    return make_config("digits", raw)


class Recorder(Plugin):
    def __init__(self, log: list):
        self.log = log

    def setup(self, state):
        self.log.append("setup")

    def after_epoch(self, state):
        self.log.append(f"epoch {state.epoch + 1}")
        return {"seen_loss": state.losses["loss"], "marker": state.epoch * 10}

    def teardown(self, state):
        self.log.append("teardown")


def test_plugin_after_epoch_fields_join_the_history_rows_and_the_epoch_events():
    log: list = []
    state = _state()
    state.job = ctx = CollectingContext()
    history = run_loop(create_method("ft", _cfg()), state, epochs=2, lr=0.01, momentum=0.9, weight_decay=0.0,
                       plugins=[Recorder(log)])
    assert log == ["setup", "epoch 1", "epoch 2", "teardown"]
    assert [h["marker"] for h in history] == [0, 10]
    assert all(h["seen_loss"] == h["losses"]["loss"] for h in history)
    assert [e["marker"] for e in ctx.events if e["type"] == "epoch"] == [0, 10]


def test_teardown_of_the_method_and_every_plugin_runs_when_the_loop_raises():
    log: list = []

    class Failing(Plugin):
        def teardown(self, state):
            log.append("failing teardown")
            raise RuntimeError("teardown failed")

    method = create_method("ga", _cfg())
    method.teardown = lambda state: log.append("method teardown")
    state = _state()
    state.job = ctx = CollectingContext()
    with pytest.raises(DivergenceError, match="lower the learning rate"):  # the loop's error, not the teardown's
        run_loop(method, state, epochs=50, lr=1e6, momentum=0.9, weight_decay=0.0,
                 plugins=[Recorder(log), Failing(), Recorder(log)])
    assert log[0] == "setup" and log[-4:] == ["method teardown", "teardown", "failing teardown", "teardown"]
    assert any("Failing.teardown failed" in e.get("message", "") for e in ctx.events)
    # a teardown that raises after a clean loop still lets the others run, then raises
    log.clear()
    with pytest.raises(RuntimeError, match="teardown failed"):
        run_loop(create_method("ft", _cfg()), _state(), epochs=1, lr=0.01, momentum=0.9, weight_decay=0.0,
                 plugins=[Failing(), Recorder(log)])
    assert log[-2:] == ["failing teardown", "teardown"]


class HandWrapped(Method):
    """The EC plug-in as it was before it became a Plugin: a Method forwarding every hook to its
    base by hand and adding beta * L_EC (kept here as the reference the plug-in must equal)."""

    def __init__(self, cfg, base_name):
        self.base = create_method(base_name, cfg)
        super().__init__(cfg, hp=self.base.hp)
        self.name = f"{base_name}+ec"
        self.ec = EC(cfg, hp=self.base.hp)

    forget_batch = property(lambda self: self.base.forget_batch or self.hp.batch_size)
    retain_batch = property(lambda self: self.base.retain_batch or self.hp.batch_size)

    def steps_per_epoch(self, state):
        return self.base.steps_per_epoch(state)

    def setup(self, state):
        self.base.setup(state)
        self.ec.setup(state)

    def parameters(self, state):
        return list(self.base.parameters(state)) + ([] if self.cfg.ec.freeze_aux else list(self.ec.aux.parameters()))

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


# no forget stream of its own / random labels / weight masks / its own batches
@pytest.mark.parametrize("name", ["ft", "rl", "salun", "scrub_alt"])
def test_ec_plugin_is_bit_identical_to_the_hand_forwarding_wrapper(name):
    cfg = _cfg(method=name, plugin="ec", beta=0.7)
    runs = {}
    for how in ("plugin", "wrapped"):
        state = _state(augment=True)  # the augmentation draws from the global generator too
        if how == "plugin":
            method, plugins = build_method(cfg)
            assert len(plugins) == 1 and cfg.label_of() == f"{name}+ec"
        else:
            method, plugins = HandWrapped(cfg, name), []
        history = run_loop(method, state, epochs=2, lr=0.01, momentum=0.9, weight_decay=5e-4, seed=3,
                           plugins=plugins)
        runs[how] = (history, [p.detach().clone() for p in state.model.parameters()])
    (h1, w1), (h2, w2) = runs["plugin"], runs["wrapped"]
    assert h1 == h2  # every logged loss, in the same order
    assert [list(r["losses"]) for r in h1] == [list(r["losses"]) for r in h2]
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))
    assert any(k.startswith("ec/cu/") for k in h1[0]["losses"]) and "base" in h1[0]["losses"]
    # and it is not the method alone
    state = _state(augment=True)
    alone = run_loop(create_method(name, cfg), state, epochs=2, lr=0.01, momentum=0.9, weight_decay=5e-4, seed=3)
    assert not any(k.startswith("ec/") for k in alone[0]["losses"]) and alone != h1


def test_ec_plugin_trains_its_own_copy_of_the_aux_modules_unless_frozen():
    for frozen in (False, True):
        cfg = _cfg(method="ft", plugin="ec", **{"ec.freeze_aux": str(frozen).lower()})
        method, (plugin,) = build_method(cfg)
        state = _state()
        run_loop(method, state, epochs=1, lr=0.05, momentum=0.9, weight_decay=0.0, plugins=[plugin])
        shared = [p.detach() for p in state.extra["aux"].parameters()]
        own = list(plugin.ec.aux.parameters())
        assert all(torch.equal(a, b) for a, b in zip(shared, own)) == frozen


def test_plugin_labels_and_extras_follow_the_catalog():
    cfg = make_config("digits", {"method": "ft", "plugin": "ec"})
    assert [cfg.label_of(m) for m in ("ft", "scrub_alt", "cu", "ec")] == ["ft+ec", "scrub_alt+ec", "cu+ec", "ec"]
    assert build_method(cfg, "ec")[1] == [] and make_config("digits").label_of("ft") == "ft"
    aux = extras()["aux"]
    assert not aux.needed(["ft", "ga"], False) and aux.needed(["ft", "ga"], True) and aux.needed(["ft", "cu"], False)


def test_a_compare_with_the_plugin_needs_no_single_run_method():
    """A comparison's plug-in joins each method that takes one, whatever its single-run `method` says
    (which defaults to ec, a method that takes none)."""
    from engine.runner import prepare
    norm, _ = prepare("compare", {"preset": "digits", "overrides": {"plugin": "ec"}})
    assert norm["config"]["plugin"] == "ec" and norm["config"]["method"] == "ec" and "ft" in norm["methods"]
    cfg = make_config("digits", {"plugin": "ec"})
    assert [cfg.label_of(m) for m in ("ft", "ec", "retrain")] == ["ft+ec", "ec", "retrain"]


GENERIC = ["engine/runner.py", "engine/unlearning.py", "engine/training.py", "engine/compare.py", "engine/evaluate.py"]


@pytest.mark.parametrize("path", GENERIC)
def test_generic_code_imports_nothing_from_the_ec_package_and_names_no_ec_method(path):
    tree = ast.parse((ROOT / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = "." * node.level + (node.module or "")
            assert not mod.lstrip(".").startswith(("methods.ec", "engine.methods.ec")), f"{path} imports {mod}"
            if mod.lstrip(".") in ("methods", "engine.methods"):
                assert "ec" not in {a.name for a in node.names}, f"{path} imports engine.methods.ec"
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("engine.methods.ec") for a in node.names), path
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in docs}
    assert not names & {"ec", "cu", "aux"}, f"{path} names {names & {'ec', 'cu', 'aux'}}"


def test_runner_stays_under_500_lines():
    assert len((ROOT / "engine/runner.py").read_text().splitlines()) < 500


# -- jobs ------------------------------------------------------------------------------------------

TINY_EVAL = {"umap": False, "probe_epochs": 1, "max_samples": 64, "epoch_cka": True, "embed_per_class": 5,
             "cka_batch": 32}
TINY = {"model": {"width": 8}, "train": {"epochs": 1}, "ec": {"aux_epochs": 1}, "eval": TINY_EVAL, "calibrate": "off",
        "methods": {"ft": {"epochs": 2}, "ec": {"epochs": 1}, "ga": {"epochs": 1}}}


def _job(tmp_path, kind, overrides, methods=None):
    from engine import runner
    spec = {"preset": "digits", "overrides": {**TINY, **overrides}, **({"methods": methods} if methods else {})}
    norm, _ = runner.prepare(kind, spec)
    ctx = CollectingContext()
    out = tmp_path / f"{kind}-{len(list(tmp_path.iterdir()))}"
    runner.execute(kind, norm, out, ctx)
    return runner.store.load_json(out / "results.json"), ctx


def _no_seconds(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "seconds"}


@pytest.mark.slow
def test_plugin_in_run_and_compare_jobs(tmp_path, monkeypatch):
    """A run job with plugin: ec and the same run inside a compare with plugin: ec are one run
    (same label, params, history, metrics); the compare runs EC itself as itself; a compare without
    the plug-in and without EC or CU prepares no auxiliary modules."""
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    (tmp_path / "jobs").mkdir()
    jobs = tmp_path / "jobs"
    plain, ctx = _job(jobs, "compare", {}, ["ft", "ga"])
    assert set(plain["runs"]) == {"original", "retrain", "ft", "ga"}
    assert not any(e.get("stage") == "aux" for e in ctx.events)  # nothing pretrained the aux modules
    run, rctx = _job(jobs, "run", {"method": "ft", "plugin": "ec", "beta": 0.5})
    assert any(e.get("stage") == "aux" for e in rctx.events)  # the plug-in's run pretrains them
    cmp, cctx = _job(jobs, "compare", {"method": "ft", "plugin": "ec", "beta": 0.5}, ["ft", "ec"])
    assert set(cmp["runs"]) == {"original", "retrain", "ft+ec", "ec"}
    one, other = _no_seconds(run["runs"]["ft+ec"]), _no_seconds(cmp["runs"]["ft+ec"])
    one.pop("calibration", None), other.pop("calibration", None)
    assert one == other and one["params"]["beta"] == 0.5 and one["method"] == "ft"
    assert any(k.startswith("ec/") for k in one["history"][0]["losses"])
    assert "beta" not in cmp["runs"]["ec"]["params"] and cmp["runs"]["ec"]["label"] == "ec"
    assert _no_seconds(plain["runs"]["ft"])["metrics"] != one["metrics"]  # the plug-in changed the run
    stages = [e["name"] for e in cctx.events if e.get("type") == "stage" and e.get("stage") == "method"]
    assert stages == ["ft+ec", "ec"]
