"""Audits of outside checkpoints: consistency with a comparison, a torchvision ResNet-18 end to end,
the loader's formats and wrappers, and every bad input refused before anything is queued or written."""
from __future__ import annotations

import glob
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import api, checkpoints, cli
from engine.config import make_config
from engine.models import create_model
from engine.runner import execute, prepare

# A tiny digits comparison: 2 epochs for the base models, 1 per method, no UMAP.
SETS = ["train.epochs=2", "ec.aux_epochs=1", "methods.ec.epochs=1", "methods.ft.epochs=1", "eval.umap=false",
        "eval.probe_epochs=10", "eval.embed_per_class=5", "eval.epoch_cka=false"]
FLAGS = [a for s in SETS for a in ("--set", s)]
METRICS = ("forget_acc", "retain_acc", "test_acc", "forget_test_acc", "retain_test_acc", "mia_efficacy",
           "knn_forget_acc", "avg_gap")


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("ECLAB_HOME", str(h))
    monkeypatch.setenv("ECLAB_NO_AUTOSTART", "1")
    return h


def _resave(src: Path, dst: Path) -> Path:
    """A .pth.tar the way DDP training scripts write them: {"state_dict": {"module.<key>": ...}, "epoch": ...}."""
    state = load_file(str(src))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 2, "best_acc": 0.9}, dst)
    return dst


def _audit(out: Path, *args: str) -> int:
    return cli.main(["audit", "--preset", "digits", *FLAGS, *args, "--out", str(out)])


@pytest.mark.slow
def test_audit_reproduces_the_comparison(home, tmp_path, capsys):
    cmp_dir = tmp_path / "cmp"
    norm, _ = prepare("compare", {"preset": "digits", "overrides": _overrides(), "methods": ["ec", "ft"]})
    execute("compare", norm, cmp_dir)
    ref = json.loads((cmp_dir / "results.json").read_text())
    cache = home / "cache"
    files = {"original": glob.glob(str(cache / "orig-*" / "model.safetensors"))[0],
             "retrain": glob.glob(str(cache / "retrain-*" / "model.safetensors"))[0],
             "ec": cmp_dir / "weights__ec.safetensors"}
    ck = {n: _resave(Path(p), tmp_path / f"{n}.pth.tar") for n, p in files.items()}

    out = tmp_path / "audit"
    rc = _audit(out, "--original", str(ck["original"]), "--retrain", str(ck["retrain"]), "--unlearned", f"ec={ck['ec']}")
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "audit" and list(res["runs"]) == ["original", "retrain", "ec"]
    assert res["audit"]["reference"] == "original and retrain"
    for name in res["runs"]:
        got, want = res["runs"][name], ref["runs"][name]
        for key in METRICS:
            assert got["metrics"][key] == pytest.approx(want["metrics"][key], abs=1e-3), (name, key)
        for field in ("cka_vs_original", "cka_vs_retrain"):
            assert set(got[field]) == set(want[field]) == {"forget", "retain", "forget_test", "retain_test"}
            for split, layers in want[field].items():
                for layer, v in layers.items():
                    assert got[field][split][layer] == pytest.approx(v, abs=1e-3), (name, field, split, layer)
        for layer, v in want["probe_forget_acc"].items():
            assert got["probe_forget_acc"][layer] == pytest.approx(v, abs=1e-3), (name, layer)
    # the same splits, saved with the run; the audit is listed as a done job for the pages
    a, b = np.load(out / "splits.npz"), np.load(cmp_dir / "splits.npz")
    assert all(np.array_equal(a[k], b[k]) for k in b.files)
    listed = [(j["kind"], r["kind"]) for j, r in api.list_results()]
    assert ("audit", "audit") in listed


def _overrides() -> dict:
    from engine.config import apply_sets
    return apply_sets({}, SETS)


def _png_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 16) -> Path:
    """Tiny RGB images, a different colour per class, with seeded noise."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(rng.normal(60 + 70 * c, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"c{c}" / f"{i}.png")
    return root


@pytest.mark.slow
def test_torchvision_resnet18_state_dict_audits_end_to_end(home, tmp_path, capsys):
    from torchvision.models import resnet18
    folder = _png_folder(tmp_path / "imgs")
    torch.manual_seed(0)
    orig = resnet18(num_classes=3)  # torchvision's own model, ImageNet stem
    torch.save(orig.state_dict(), tmp_path / "orig.pt")  # a bare state dict
    unl = resnet18(num_classes=3)
    unl.load_state_dict(orig.state_dict())
    with torch.no_grad():
        unl.layer4[1].conv2.weight.mul_(0.5)
        unl.fc.weight.add_(0.1 * torch.randn_like(unl.fc.weight))
    save_file({k: v.contiguous() for k, v in unl.state_dict().items()}, str(tmp_path / "unl.safetensors"))
    # sample-wise forgetting from an index file: ids of training samples of this scenario
    over = {"data": {"dataset": "imagefolder", "data_dir": str(folder), "image_size": 16},
            "model": {"arch": "tv_resnet18"}, "forget": {"random": 0.2},
            "eval": {"umap": False, "probe_epochs": 5, "embed_per_class": 4, "cka_batch": 8}}
    from engine.runner import load_scenario
    train_idx = load_scenario(make_config("digits", over)).splits.train_idx
    (tmp_path / "forget.txt").write_text("\n".join(map(str, train_idx[::5])) + "\n")

    spec = {"preset": "digits", "overrides": over, "original": str(tmp_path / "orig.pt"),
            "unlearned": [f"mine={tmp_path / 'unl.safetensors'}"], "forget_indices": str(tmp_path / "forget.txt")}
    job = api.submit("audit", spec)
    assert job["state"] == "queued" and job["spec"]["forget_indices"] == sorted(int(i) for i in train_idx[::5])
    from engine.jobs import Worker
    Worker(poll=0.05, warm=False, handle_signals=False).run(once=True)
    done = api.get_job(job["id"])
    assert done["state"] == "done", done.get("error")
    res = api.load_results(job["id"])
    assert res["kind"] == "audit" and res["scenario"]["arch"] == "tv_resnet18"
    assert res["layers"] == ["layer1", "layer2", "layer3", "layer4"]
    assert res["scenario"]["n_forget"] == len(train_idx[::5]) and res["audit"]["reference"] == "original only"
    assert list(res["runs"]) == ["original", "mine"]
    mine, original = res["runs"]["mine"], res["runs"]["original"]
    assert all(abs(v - 1) < 1e-5 for v in original["cka_vs_original"]["forget"].values())
    assert mine["cka_vs_original"]["forget"]["layer4"] < 0.999999  # layer4 was changed, layer1 was not
    assert mine["cka_vs_original"]["forget"]["layer1"] == pytest.approx(1.0, abs=1e-5)
    assert "cka_vs_retrain" not in mine and mine["metrics"]["avg_gap"] is None
    assert set(mine["cka_vs_original"]) == {"forget", "retain", "retain_test"}  # no forget-class test split
    splits = np.load(api.get_job(job["id"])["run_dir"] + "/splits.npz")
    assert np.array_equal(splits["forget_idx"], np.sort(train_idx[::5]))
    assert not list(Path(done["run_dir"]).glob("weights__original*"))  # only the audited models' weights


# -- the loader ------------------------------------------------------------------------------------

def _small(num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes, 1, 8, width=8)


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": {f"model.{k}": v for k, v in sd.items()}},
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "optimizer_name": "sgd"},
    lambda sd: {"model": {"state_dict": {f"module.model.{k}": v for k, v in sd.items()}}},
])
def test_wrappers_and_prefixes_load_strictly(tmp_path, wrap):
    model = _small()
    path = tmp_path / "m.pth.tar"
    torch.save(wrap(model.state_dict()), path)
    cfg = make_config("digits", {"model": {"width": 8}})
    loaded = checkpoints.load_model(path, cfg, "original")
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(model.eval()(x), loaded(x))


def test_safetensors_loads(tmp_path):
    model = _small()
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    loaded = checkpoints.load_model(tmp_path / "m.safetensors", make_config("digits", {"model": {"width": 8}}), "x")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_torchvision_archs_have_imagenet_stems():
    m = create_model("tv_resnet50", 100, 3, 32)
    assert m.conv1.kernel_size == (7, 7) and m.supervision_points == ["layer1", "layer2", "layer3", "layer4"]
    assert create_model("tv_resnet18", 5, 1, 16).conv1.in_channels == 1


# -- bad input: a clear error, nothing queued, no folder ---------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (self.marker, "w"))


def _bad_cases(tmp_path: Path) -> dict:
    good = tmp_path / "good.pt"
    torch.save(_small().state_dict(), good)
    (tmp_path / "notes.pt").write_text("these are my notes, not a model\n")
    torch.save({"state_dict": _Evil(tmp_path / "PWNED")}, tmp_path / "evil.pth.tar")
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump(_Evil(tmp_path / "PWNED"), fh)
    torch.save(_small(5).state_dict(), tmp_path / "five.pt")
    (tmp_path / "folder.pt").mkdir()
    return {
        "not a checkpoint": (["--original", str(tmp_path / "notes.pt"), "--unlearned", f"u={good}"],
                             "is not a PyTorch checkpoint"),
        "code-executing pickle (torch.save)": (["--original", str(good), "--unlearned", f"u={tmp_path / 'evil.pth.tar'}"],
                                               "refuses to unpickle"),
        "code-executing pickle (pickle.dump)": (["--original", str(tmp_path / "evil.pth"), "--unlearned", f"u={good}"],
                                                "refuses to unpickle"),
        "wrong architecture": (["--arch", "resnet18", "--original", str(good), "--unlearned", f"u={good}"],
                               "does not match architecture resnet18"),
        "class count": (["--original", str(good), "--unlearned", f"u={tmp_path / 'five.pt'}"],
                        "has 5 classes but the data set has 10"),
        "missing file": (["--original", str(good), "--retrain", str(tmp_path / "nope.pt"), "--unlearned", f"u={good}"],
                         "does not exist"),
        "a folder": (["--original", str(tmp_path / "folder.pt"), "--unlearned", f"u={good}"], "is not a file"),
        "reserved name": (["--original", str(good), "--unlearned", f"retrain={good}"], "is reserved"),
        "no unlearned model": (["--original", str(good)], "name at least one unlearned model"),
        "indices without a share": (["--original", str(good), "--unlearned", f"u={good}", "--forget-indices",
                                     str(tmp_path / "notes.pt")], "pass --forget-random P too"),
    }


CASES = ["not a checkpoint", "code-executing pickle (torch.save)", "code-executing pickle (pickle.dump)",
         "wrong architecture", "class count", "missing file", "a folder", "reserved name", "no unlearned model",
         "indices without a share"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_before_anything_happens(home, tmp_path, capsys, case):
    args, message = _bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    rc = _audit(out, "--set", "model.width=8", *args)
    err = capsys.readouterr().err
    assert rc != 0 and message in err, err
    assert not out.exists()  # nothing half-written
    assert not (tmp_path / "PWNED").exists()  # no code ran
    # the same request through the job API: refused, nothing queued
    spec = _spec_from_args(args)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        api.submit("audit", spec)
    assert api.list_jobs() == []
    assert not (tmp_path / "PWNED").exists()


def _spec_from_args(args: list[str]) -> dict:
    it, spec, over = iter(args), {"preset": "digits", "unlearned": []}, {"model": {"width": 8}}
    for flag in it:
        value = next(it)
        if flag == "--arch":
            over["model"]["arch"] = value
        elif flag == "--unlearned":
            spec["unlearned"].append(value)
        else:
            spec[flag[2:].replace("-", "_")] = value
    spec["overrides"] = over
    return spec


def test_wrong_architecture_names_the_one_that_fits(tmp_path):
    path = tmp_path / "cnn.pt"
    torch.save(create_model("small_cnn", 10, 1, 8).state_dict(), path)
    with pytest.raises(checkpoints.CheckpointFormatError) as err:
        checkpoints.load_model(path, make_config("digits", {"model": {"arch": "tv_resnet18"}}), "original")
    text = str(err.value)
    assert "missing keys" in text and "conv1.weight" in text and "unexpected keys" in text and "block1" in text
    assert "fits --arch small_cnn" in text


def test_size_cap(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    torch.save(_small().state_dict(), path)
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_MB", 0)
    with pytest.raises(checkpoints.CheckpointFormatError, match="over the 0 MB limit"):
        checkpoints.check_path(path, "original")


def test_changed_file_after_queueing_is_an_error(home, tmp_path):
    good = tmp_path / "good.pt"
    torch.save(_small().state_dict(), good)
    norm, _ = prepare("audit", {"preset": "digits", "overrides": {"model": {"width": 8}}, "original": str(good),
                                "unlearned": [f"u={good}"]})
    m = _small()
    with torch.no_grad():
        m.fc.bias.add_(1.0)
    torch.save(m.state_dict(), good)  # other weights under the same name
    with pytest.raises(ValueError, match="changed since the audit was queued"):
        execute("audit", norm, tmp_path / "run")


def test_index_file_formats(tmp_path):
    from engine.audit import AuditError, read_indices
    np.save(tmp_path / "i.npy", np.array([5, 1, 3]))
    assert read_indices(tmp_path / "i.npy") == [1, 3, 5]
    (tmp_path / "i.txt").write_text("# forget these\n4\n2\n\n")
    assert read_indices(tmp_path / "i.txt") == [2, 4]
    (tmp_path / "dup.txt").write_text("1\n1\n")
    with pytest.raises(AuditError, match="distinct"):
        read_indices(tmp_path / "dup.txt")
    np.save(tmp_path / "f.npy", np.array([0.5]))
    with pytest.raises(AuditError, match="integer"):
        read_indices(tmp_path / "f.npy")


def test_submit_cli_queues_an_audit(home, tmp_path, capsys):
    good = tmp_path / "good.pt"
    torch.save(_small().state_dict(), good)
    rc = cli.main(["submit", "--kind", "audit", "--set", "model.width=8", "--original", str(good),
                   "--unlearned", f"u={good}"])
    assert rc == 0, capsys.readouterr().err
    jobs = api.list_jobs()
    assert [j["kind"] for j in jobs] == ["audit"] and jobs[0]["spec"]["unlearned"] == {"u": str(good.resolve())}
    assert os.path.isabs(jobs[0]["spec"]["original"])


# -- the pages ---------------------------------------------------------------------------------------

def test_pages_show_an_audit_without_retrain_and_the_launch_form_queues_one(home, tmp_path, capsys):
    from streamlit.testing.v1 import AppTest
    from dashboard import logic
    good = tmp_path / "good.pt"
    torch.save(_small().state_dict(), good)
    rc = cli.main(["audit", "--set", "model.width=8", "--set", "eval.umap=false", "--set", "eval.probe_epochs=5",
                   "--set", "eval.embed_per_class=5", "--original", str(good), "--unlearned", f"mine={good}",
                   "--out", str(tmp_path / "aud")])
    assert rc == 0, capsys.readouterr().err
    assert "no retrained reference supplied: CKA vs the original only" in capsys.readouterr().err
    app = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")

    def page(name):
        at = AppTest.from_file(app, default_timeout=180)  # generous: a loaded CI machine
        at.run()
        if name != "overview":
            at.switch_page(f"views/{name}.py")
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    for name in ("overview", "layers", "embeddings", "compare"):
        at = page(name)
        if name in ("overview", "layers"):
            assert any(logic.NO_RETRAIN_NOTE in str(w.value) for w in at.warning), name
        if name == "layers":
            assert list(at.radio(key="ly_ref").options) == ["Original (before unlearning)"]

    at = page("launch")
    assert any(s.value == "Audit" for s in at.subheader)
    at.text_input(key="a_original").input(str(tmp_path / "missing.pt"))
    at.text_area(key="a_unlearned").input(f"mine={good}")
    at.button(key="a_submit").click().run()
    assert any("Not queued" in str(e.value) and "does not exist" in str(e.value) for e in at.error)
    assert [j["kind"] for j in api.list_jobs()] == ["audit"]  # only the recorded CLI audit
    wide = tmp_path / "wide.safetensors"  # the form has no width option: the default small_cnn (width 32)
    save_file(create_model("small_cnn", 10, 1, 8).state_dict(), str(wide))
    at.text_input(key="a_original").input(str(wide))
    at.text_area(key="a_unlearned").input(f"mine={wide}")
    at.button(key="a_submit").click().run()
    assert not at.error, [e.value for e in at.error]
    queued = [j for j in api.list_jobs() if j["state"] == "queued"]
    assert len(queued) == 1 and queued[0]["kind"] == "audit" and list(queued[0]["spec"]["unlearned"]) == ["mine"]


def test_upload_is_capped_and_stored(home):
    from engine.audit import AuditError, save_upload
    p = save_upload("../my model.pth", b"bytes")
    assert Path(p).read_bytes() == b"bytes" and Path(p).name == "my_model.pth" and str(home) in p
    with pytest.raises(AuditError, match="upload limit"):
        save_upload("big.pt", b"0" * (200 * 2**20 + 1))
