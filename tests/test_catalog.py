"""engine/catalog.py is the one home of the method, architecture and data-set facts: the config,
both registries, the comparison default and the figures agree with it; scrub_alt, the method added
as one file, runs its alternating schedule and forgets."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

from dashboard import figures, launch_spec
from engine import calibrate, catalog, cli, config, runner
from engine.data import datasets
from engine.events import CollectingContext
from engine.methods import base as methods_base
from engine.methods import create_method, method_names
from engine.methods import build_method
from engine.models import FeatureTaps, create_model, model_names, model_points
from engine.training import Plugin, run_loop
from tests.jobs_helpers import TINY_EVAL
from tests.test_engine import _tiny_cfg, _tiny_state

ROOT = Path(__file__).resolve().parent.parent


def test_catalog_and_config_import_without_torch():
    code = "import sys, engine.catalog, engine.config; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# -- one home, one check --------------------------------------------------------------------------

def test_catalog_config_and_registries_agree():
    """The catalog, engine.config (METHOD_NAMES, the MethodsConfig sections, SUPERVISION_POINTS, the
    architectures ModelConfig accepts) and both registries (methods, models) name the same things."""
    names = list(catalog.METHODS)
    assert config.METHOD_NAMES == names
    assert list(config.MethodsConfig.model_fields) == names
    assert set(method_names()) == set(names)
    for name, info in catalog.METHODS.items():
        assert config.MethodsConfig.model_fields[name].annotation is info.hp, name
        assert methods_base._REGISTRY[name].info is info, name  # the card is the one its class registered
    # the presets' method recipes are the cards'
    assert config.PRESETS["teach"]["methods"] == catalog.recipes("teach")
    assert all(config.PRESETS[p]["methods"] == catalog.recipes("optml") for p in ("cifar10", "cifar100", "cifar10-vit"))
    assert set(catalog.recipes("teach")) == set(names) - {"retrain"}  # every unlearning method has a teach recipe
    archs = list(catalog.SUPERVISION_POINTS)
    assert list(config.SUPERVISION_POINTS) == archs
    assert all(config.SUPERVISION_POINTS[a] == list(p) for a, p in catalog.SUPERVISION_POINTS.items())
    assert set(model_names()) == set(archs)
    assert all(model_points(a) == catalog.SUPERVISION_POINTS[a] for a in archs)  # source reading == registry
    assert set(typing.get_args(config.ModelConfig.model_fields["arch"].annotation)) == set(archs)


@pytest.mark.parametrize("name", list(catalog.METHODS))
def test_form_knobs_are_options_of_the_method_or_of_the_ec_section(name):
    cfg = config.make_config("digits")
    own = type(cfg.method_config(name)).model_fields
    assert all(k in own for k in catalog.method_knobs(name)), name
    if catalog.METHODS[name].reads_ec:
        assert all(k in config.ECConfig.model_fields for k in catalog.EC_SECTION_KNOBS)
    # the Launch form's spec from its values is a valid run of this method, its knobs where they belong
    values = {"preset": "digits", "method": name, "plugin": False, "beta": 1.0, "arch": "small_cnn",
              "weights": [1.0, 2.0, 1.0, 1.0], "tau": 0.5, "lambda_cu": 2.0, "lambda_ce": 1.5, "epochs": 2,
              "lr": 0.02, "forget_mode": "classes", "classes": [3], "random": 0.1, "seed": 0}
    spec = launch_spec.build_run_spec(values)
    run = launch_spec.check_spec(spec)
    assert set((spec["overrides"].get("methods") or {}).get(name, {})) == set(catalog.method_knobs(name))
    assert ("ec" in spec["overrides"]) == catalog.METHODS[name].reads_ec
    if catalog.method_knobs(name):
        assert (run.method_config(name).epochs, run.method_config(name).lr) == (2, 0.02)


@pytest.mark.parametrize("name", list(catalog.METHODS))
def test_generic_code_reads_aux_and_plugin_from_the_catalog(name):
    info = catalog.METHODS[name]
    # the plug-in: a single run of it is refused where the catalog says so, else it wraps the method
    over = {"method": name, "plugin": "ec"}
    cfg = config.make_config("digits", over)
    method, plugins = build_method(cfg)
    if info.pluggable:
        runner.prepare("run", {"preset": "digits", "overrides": over})
        assert cfg.label_of() == f"{name}+ec" and (method.name, [p.name for p in plugins]) == (name, ["ec"])
        assert catalog.needs_aux(name, plugin=True) and catalog.reads_ec(name, plugin=True)
    else:
        assert cfg.label_of() == name and plugins == []  # a comparison's row of it runs without one
        with pytest.raises(config.ConfigError, match="another method") as err:
            runner.prepare("run", {"preset": "digits", "overrides": over})
        assert err.value.option == "plugin"
    # calibration's cache key depends on EC's auxiliary modules' settings exactly when the method
    # trains with them (a custom config: a preset's calibration uses the preset's `ec` section)
    custom = {**config.make_config("digits").model_dump(), "preset": "custom"}
    key = calibrate.calibration_key(config.validate(custom), name)
    other = calibrate.calibration_key(config.validate({**custom, "ec": {**custom["ec"], "aux_epochs": 3}}), name)
    assert (key != other) == info.needs_aux


def test_labels_and_colours_come_from_the_catalog():
    for name, info in catalog.METHODS.items():
        assert figures.display_name(name) == info.label
        assert figures.method_color(name) == info.color
    assert figures.display_name("scrub_alt+ec") == "SCRUB (alternating) + EC"
    assert figures.base_method("scrub_alt+ec") == "scrub_alt"


def test_default_comparison_is_every_flagged_method_and_leaves_scrub_alt_out():
    assert runner.COMPARE_DEFAULT == [m for m, info in catalog.METHODS.items() if info.in_default_compare]
    assert "scrub_alt" not in runner.COMPARE_DEFAULT and "retrain" not in runner.COMPARE_DEFAULT
    assert runner.parse_methods(None) == runner.COMPARE_DEFAULT
    assert runner.parse_methods("scrub,scrub_alt") == ["scrub", "scrub_alt"]  # the CLI's --methods


# -- architectures and data sets -----------------------------------------------------------------

@pytest.mark.parametrize("arch", list(catalog.SUPERVISION_POINTS))
def test_supervision_points_match_the_models_taps_on_a_tiny_input(arch):
    size = 8 if arch == "small_cnn" else 32
    model = create_model(arch, 10, 3, size).eval()
    with torch.no_grad(), FeatureTaps(model) as taps:
        model(torch.randn(2, 3, size, size))
    assert list(taps.features) == list(catalog.SUPERVISION_POINTS[arch])


def test_data_sets_agree_with_the_config():
    assert config.DATASET_CLASSES == {name: info.num_classes for name, info in catalog.DATASETS.items()}
    assert typing.get_args(config.DataConfig.model_fields["dataset"].annotation) == catalog.DATASET_NAMES
    assert datasets.DATASETS == catalog.DATASET_NAMES  # what load_dataset accepts
    for name, info in catalog.DATASETS.items():
        assert len(catalog.class_names(name, info.num_classes)) == info.num_classes
    assert catalog.class_names("cifar10", 10)[3] == "cat"
    assert catalog.class_names("imagefolder", 3) == ["0", "1", "2"]


# -- scrub_alt -----------------------------------------------------------------------------------

def test_scrub_alt_alternates_a_max_pass_on_forget_then_a_min_pass_on_retain():
    cfg = _tiny_cfg(**{"methods.scrub_alt.max_epochs": 1})
    state = _tiny_state(cfg)
    method = create_method("scrub_alt", cfg)
    seen: list[tuple[int, str, torch.Tensor | None]] = []  # (epoch, kind of step, its batch)
    loss = method.loss

    def recording_loss(state, xf, yf, xr, yr):
        out, logs = loss(state, xf, yf, xr, yr)
        if "max" in logs:
            seen.append((state.epoch, "max", method.forget_batches[state.step]))
        elif "min" in logs:
            seen.append((state.epoch, "min", method.retain_batches[state.step - method.n_forget]))
        else:
            seen.append((state.epoch, "skip", None))
        return out, logs

    method.loss = recording_loss
    history = run_loop(method, state, epochs=2, lr=0.001, momentum=0.9, weight_decay=5e-4)
    n_f, n_r = method.n_forget, method.n_retain  # 24 forget, 72 retain samples in batches of 16
    assert (n_f, n_r) == (2, 5)
    assert [k for e, k, _ in seen if e == 0] == ["max"] * n_f + ["min"] * n_r
    assert [k for e, k, _ in seen if e == 1] == ["skip"] * n_f + ["min"] * n_r
    for kind, idx in (("max", state.forget_idx), ("min", state.retain_idx)):  # exact passes in epoch 0
        drawn = torch.cat([b for e, k, b in seen if e == 0 and k == kind])
        assert sorted(drawn.tolist()) == sorted(idx.tolist())
    assert "max" in history[0]["losses"] and "max" not in history[1]["losses"]


def test_scrub_alt_skipped_steps_leave_the_weights_alone():
    cfg = _tiny_cfg(**{"methods.scrub_alt.max_epochs": 0})
    state = _tiny_state(cfg)
    method = create_method("scrub_alt", cfg)
    method.setup(state)
    assert method.n_forget == 0 and method.steps_per_epoch(state) == method.n_retain
    cfg = _tiny_cfg(**{"methods.scrub_alt.max_epochs": 1})
    method = create_method("scrub_alt", cfg)
    method.setup(state)
    state.epoch, state.step = 1, 0
    method.before_step(state)
    loss, logs = method.loss(state, None, None, None, None)
    loss.backward()
    assert logs == {} and all(p.grad is None for p in state.model.parameters())


def test_scrub_alt_prefixes_are_exact_so_calibration_scores_every_epoch_of_one_run():
    """engine/calibrate.py scores epoch e of an E-epoch run as the e-epoch setting unless the method
    says its schedule depends on E: scrub_alt's does not (max passes end at an absolute epoch)."""
    cfg = _tiny_cfg(**{"methods.scrub_alt.max_epochs": 1})
    assert create_method("scrub_alt", cfg).schedule_uses_epochs is False

    def weights_per_epoch(total: int) -> list[list[torch.Tensor]]:
        state = _tiny_state(cfg)
        out: list[list[torch.Tensor]] = []

        class Snapshot(Plugin):
            def after_epoch(self, state):
                out.append([p.detach().clone() for p in state.model.parameters()])

        run_loop(create_method("scrub_alt", cfg), state, epochs=total, lr=0.01, momentum=0.9, weight_decay=5e-4,
                 plugins=[Snapshot()])
        return out

    one, three = weights_per_epoch(1), weights_per_epoch(3)
    assert all(torch.equal(a, b) for a, b in zip(one[0], three[0]))


def test_scrub_alt_is_an_option_and_a_comparison_method_of_the_cli(capsys):
    assert cli.main(["options"]) == 0
    out = capsys.readouterr().out
    for option in ("methods.scrub_alt.lr", "methods.scrub_alt.max_epochs", "methods.scrub_alt.alpha"):
        assert option in out
    with pytest.raises(SystemExit):
        cli.main(["compare", "--help"])
    assert "scrub_alt" in capsys.readouterr().out  # listed, though not in the default comparison
    spec, _ = runner.prepare("compare", {"preset": "digits", "methods": "scrub_alt"})
    assert spec["methods"] == ["scrub_alt"]


@pytest.mark.slow
def test_scrub_alt_forgets_on_digits_end_to_end(tmp_path, monkeypatch):
    """The digits recipe (the SCRUB authors' schedule: max passes in the first two of three epochs,
    alpha 0.001) forgets the class as far as retraining does, with retain accuracy kept."""
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    over = {"model": {"width": 16}, "train": {"epochs": 8}, "eval": TINY_EVAL, "calibrate": "off"}
    spec, _ = runner.prepare("compare", {"preset": "digits", "overrides": over, "methods": ["scrub_alt"]})
    runner.execute("compare", spec, tmp_path / "run", CollectingContext())
    res = runner.store.load_json(tmp_path / "run" / "results.json")
    original, retrain = res["runs"]["original"]["metrics"], res["runs"]["retrain"]["metrics"]
    unlearned = res["runs"]["scrub_alt"]["metrics"]
    assert original["forget_acc"] > 0.8
    assert abs(unlearned["forget_acc"] - retrain["forget_acc"]) <= 0.05  # the calibration rule's tolerance
    assert unlearned["retain_acc"] > 0.9
    assert res["runs"]["scrub_alt"]["calibration"]["reached"]


# -- a method, a model: one file each ------------------------------------------------------------

TOY_METHOD = '''"""FT with label smoothing: a method added as this one file."""
from pydantic import Field

from ..hparams import MethodConfig
from ..lazy import F
from .base import Method, MethodInfo, register


class SmoothFTConfig(MethodConfig):
    smoothing: float = Field(0.2, ge=0, lt=1)


@register("smooth_ft", MethodInfo("Smooth FT", "#123456", 15, SmoothFTConfig, {"teach": {"epochs": 2, "lr": 0.05}}))
class SmoothFT(Method):
    uses_forget = False

    def loss(self, state, xf, yf, xr, yr):
        return F.cross_entropy(state.model(xr), yr, label_smoothing=self.hp.smoothing), {}
'''

TOY_MODEL = '''"""A two-layer MLP: an architecture added as this one file."""
from torch import nn

from .registry import register_model


class ToyMLP(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, width):
        super().__init__()
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, width), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(width, width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.fc2(self.fc1(x)))


@register_model("toy_mlp", points=("fc1", "fc2"))
def toy_mlp(num_classes, in_channels, image_size, width=32):
    return ToyMLP(num_classes, in_channels, image_size, width)
'''

TOY_CHECK = '''
import json, sys
from engine import catalog, cli, config
assert "torch" not in sys.modules  # the new file's card and options are read without torch
assert "smooth_ft" in config.METHOD_NAMES and catalog.METHODS["smooth_ft"].label == "Smooth FT"
assert list(config.METHOD_NAMES).index("smooth_ft") == 2  # its order: after FT (10), before GA (20)
assert config.make_config("teach").methods.smooth_ft.lr == 0.05  # its teach recipe
assert catalog.SUPERVISION_POINTS["toy_mlp"] == ("fc1", "fc2")
cli.main(["options"])
from engine import runner
from engine.events import CollectingContext
from tests.jobs_helpers import TINY_EVAL
over = {"model": {"arch": "toy_mlp", "width": 16}, "train": {"epochs": 2}, "eval": TINY_EVAL, "calibrate": "off",
        "methods": {"smooth_ft": {"epochs": 2, "lr": 0.1, "smoothing": 0.1}}}
spec, _ = runner.prepare("compare", {"preset": "digits", "overrides": over, "methods": ["smooth_ft", "ga"]})
runner.execute("compare", spec, sys.argv[1], CollectingContext())
print("RESULT " + json.dumps(json.load(open(sys.argv[1] + "/results.json"))))
'''


def test_a_method_and_a_model_are_each_one_new_file(tmp_path):
    """A copy of the engine with one new method file and one new model file: the config, the CLI's
    options and a comparison pick both up, torch-free where it reads cards, with nothing else edited."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "engine", copy / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "engine" / "methods" / "smooth_ft.py").write_text(TOY_METHOD)
    (copy / "engine" / "models" / "toy_mlp.py").write_text(TOY_MODEL)
    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{ROOT}", "ECLAB_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", TOY_CHECK, str(tmp_path / "run")], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "methods.smooth_ft.smoothing" in proc.stdout  # `engine options` lists the new method's option
    res = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert res["layers"] == ["fc1", "fc2"]  # measured at the new model's supervision points
    run = res["runs"]["smooth_ft"]
    assert run["params"]["smoothing"] == 0.1
    assert set(run["cka_vs_original"]["forget"]) == {"fc1", "fc2"}
    assert run["metrics"]["retain_acc"] > 0.5


def test_no_generic_code_names_a_baseline():
    """Outside its own file, engine/ and dashboard/ never name a method, except the three generic
    code is about: retrain (every comparison's reference), ft (the default method) and ec."""
    sources = {p: p.read_text() for d in ("engine", "dashboard") for p in (ROOT / d).rglob("*.py")}
    for name, cls in methods_base._REGISTRY.items():
        if name in ("retrain", "ft", "ec"):
            continue
        home = Path(sys.modules[cls.__module__].__file__).resolve()
        quoted = re.compile(rf"[\"']{re.escape(name)}[\"'+]")
        naming = sorted(str(p.relative_to(ROOT)) for p, text in sources.items() if quoted.search(text) and p != home)
        assert naming == [], f"{name} is named outside {home.name}: {naming}"


# -- a data set: one file ------------------------------------------------------------------------

TOY_DATASET = '''"""Noisy squares: a data set added as this one file."""
from .registry import register_dataset


@register_dataset("squares", num_classes=3, class_names=("left", "middle", "right"), channels=2, size=8,
                  train_size=60, test_size=30, aliases=("square",), cpu=True, builtin=True, order=35,
                  presets={"squares": {"note": "three classes of noisy squares",
                                       "train": {"epochs": 10, "batch_size": 16},
                                       "forget": {"classes": [1]}}})
def load_squares(req):
    import torch

    from engine.catalog import ALL_DATASETS
    from ..datasets import finish

    g = torch.Generator().manual_seed(req.seed)
    y = torch.arange(90) % 3
    x = torch.rand(90, 2, 8, 8, generator=g) * 0.3
    for c in range(3):
        x[y == c, :, 2:6, 2 * c:2 * c + 3] += 0.7
    return finish(x[:60], y[:60], x[60:], y[60:], list(ALL_DATASETS[req.name].class_names), req.image_size)
'''

TOY_DATASET_CHECK = '''
import json, sys
from engine import catalog, config
assert "torch" not in sys.modules  # the registration is read without torch
assert catalog.DATASET_NAMES.index("squares") == 3  # its order: after mnist (30), before fashion-mnist (40)
assert catalog.canonical_dataset("Square") == "squares" and config.DATASET_CLASSES["squares"] == 3
assert config.make_config("squares").data.dataset == "squares" and config.PRESETS["squares"]["train"]["epochs"] == 10
assert "torch" not in sys.modules
from engine import calibrate
from engine.checkpoints import input_shape
from engine.data import load_dataset
from engine.data.splits import known_train_size
assert "squares" in calibrate.AUTO_PRESETS  # a CPU-cheap family's preset
assert input_shape(config.make_config("squares")) == (3, 2, 8)
assert known_train_size("squares", 0.25, 0) == 60
assert load_dataset("SQUARE")[0].classes == ["left", "middle", "right"]
from dashboard import launch_spec
assert launch_spec.PRESET_NOTES["squares"] == "three classes of noisy squares"
from engine import runner
from engine.events import CollectingContext
from tests.jobs_helpers import TINY_EVAL
over = {"model": {"width": 8}, "eval": {**TINY_EVAL, "seed_band": "off"}, "calibrate": "off",
        "methods": {"ft": {"epochs": 1}}}
spec, _ = runner.prepare("compare", {"preset": "squares", "overrides": over, "methods": ["ft"]})
runner.execute("compare", spec, sys.argv[1], CollectingContext())
print("RESULT " + json.dumps(json.load(open(sys.argv[1] + "/results.json"))))
'''


@pytest.mark.slow
def test_a_data_set_is_one_new_file(tmp_path):
    """A copy of the engine with one new file in engine/data/sets: the catalog, the config's choices
    and presets, calibration's CPU presets, the checkpoint input shape, split sizes at submit, the
    loader's aliases and the Launch form's notes pick it up, and a comparison runs on it."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "engine", copy / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "engine" / "data" / "sets" / "squares.py").write_text(TOY_DATASET)
    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{ROOT}", "ECLAB_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", TOY_DATASET_CHECK, str(tmp_path / "run")], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert res["scenario"]["dataset"] == "squares" and res["scenario"]["class_names"] == ["left", "middle", "right"]
    assert (res["scenario"]["n_train"], res["scenario"]["n_test"], res["scenario"]["n_forget"]) == (60, 30, 20)
    assert res["runs"]["original"]["metrics"]["test_acc"] > 0.5


def test_every_registered_data_set_has_a_loader_and_the_facts_the_engine_reads():
    from engine.data.sets import loader_names
    assert set(loader_names()) == set(catalog.ALL_DATASETS)  # the source reading == the registry
    assert datasets.DATASETS == catalog.DATASET_NAMES
    for name, info in catalog.ALL_DATASETS.items():
        assert all(catalog.canonical_dataset(a) == name for a in (*info.aliases, name.upper()))
        assert (info.train_size is None) == (info.test_size is None), name
        for preset in info.presets:
            assert config.make_config(preset, {"data": {"data_dir": "/x"}} if name == "imagefolder" else {}) \
                .data.dataset == name
    assert calibrate.AUTO_PRESETS == tuple(p for p, (d, _) in catalog.dataset_presets().items()
                                           if catalog.ALL_DATASETS[d].cpu)
    assert list(launch_spec.PRESET_CHOICES) == [p for p in config.PRESETS if p != "custom"]
