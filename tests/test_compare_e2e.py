"""The digits comparison end to end on the CPU: the command line, results.json, arrays, caching."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import results as R

ROOT = Path(__file__).resolve().parent.parent
# calibration has its own end-to-end test (test_calibration.py): these run the recipes
SMALL = ["--set", "train.epochs=4", "--set", "ec.aux_epochs=2", "--set", "eval.probe_epochs=20",
         "--set", "eval.embed_per_class=10", "--calibrate", "off"]


def _compare(out: Path, home: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {"ECLAB_HOME": str(home), "PATH": "/usr/bin:/bin"}  # numba: the venv's cache
    return subprocess.run([sys.executable, "-m", "engine", "compare", "--preset", "digits", "--out", str(out),
                           *SMALL, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_digits_comparison_end_to_end(tmp_path):
    home = tmp_path / "home"
    out = tmp_path / "out"
    proc = _compare(out, home, "--methods", "ec,ft,ga,salun,cu", "--set", "methods.ft.epochs=2",
                    "--set", "methods.ec.epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ec" in proc.stdout and "to retrain" in proc.stdout and "worst" in proc.stdout  # the printed table
    res = json.loads((out / "results.json").read_text())
    layers = res["layers"]
    assert layers == ["block1", "block2", "block3", "block4"]
    assert list(res["runs"]) == ["original", "retrain", "ec", "ft", "ga", "salun", "cu"]
    assert res["scenario"]["forget"] == {"classes": [3]} and res["scenario"]["n_forget"] > 100
    for name, run in res["runs"].items():
        m = run["metrics"]
        for key in ("forget_acc", "retain_acc", "test_acc", "forget_test_acc", "mia_efficacy"):
            assert 0.0 <= m[key] <= 1.0, (name, key, m[key])
        for ref in ("cka_vs_original", "cka_vs_retrain"):
            assert set(run[ref]) == {"forget", "retain", "forget_test", "retain_test"}
            for split in run[ref].values():
                assert list(split) == layers
        assert set(run["probe_forget_acc"]) == set(layers)
        assert np.asarray(run["cka_matrix_vs_original"]).shape == (4, 4)
    # references: the original is identical to itself; the retrained model never saw class 3
    orig = res["runs"]["original"]
    assert all(abs(v - 1) < 1e-6 for v in orig["cka_vs_original"]["forget"].values())
    assert res["runs"]["retrain"]["metrics"]["forget_acc"] < 0.05
    assert orig["metrics"]["forget_acc"] > 0.8
    assert R.inner_cka(res["runs"]["ec"], layers) < 1.0
    # training noise: a second original from another seed is close to, but not identical with, the original
    band = res["seed_band"]["cka_vs_original"]
    assert set(band) == {"forget", "retain"} and list(band["forget"]) == layers
    assert all(0.3 < v < 1 - 1e-4 for v in band["forget"].values()), band
    # reference noise: a second retrained model, a tolerance per point from the two retrainings
    rb = res["retrain_band"]
    assert list(rb["cka_vs_original"]["forget"]) == layers and set(rb["probe_forget_acc"]) == set(layers)
    assert rb["metrics"]["forget_acc"] < 0.05  # it never saw the class either
    assert all(0.3 < v < 1 - 1e-4 for v in rb["cka_vs_retrain"]["forget"].values())  # another model, not a copy
    tol, measured = R.tolerances(res)
    assert measured and all(R.TOLERANCE_FLOOR["cka"] <= t < 0.5 for t in tol.values())
    ec = R.run_summary(res, "ec")
    assert ec["distance"] == max(abs(g["gap"]) for g in ec["gaps"] if g["inner"])

    arrays = np.load(out / "arrays.npz", allow_pickle=False)
    n = len(arrays["embed_labels"])
    assert arrays["embed_is_forget"].sum() > 0 and n == 100
    for name in res["runs"]:
        assert arrays[f"umap__{name}"].shape == (n, 2)
        assert arrays[f"feat__{name}__block2"].dtype == np.float16
        assert len(arrays[f"conf__{name}__forget"]) == res["scenario"]["n_forget"]

    # second comparison on the same scenario reuses the cached base models, with identical numbers
    out2 = tmp_path / "out2"
    proc2 = _compare(out2, home, "--methods", "ft", "--set", "methods.ft.epochs=2")
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "original: cached" in proc2.stderr and "retrain: cached" in proc2.stderr
    res2 = json.loads((out2 / "results.json").read_text())
    assert res2["runs"]["ft"]["metrics"] == res["runs"]["ft"]["metrics"]  # deterministic on one device


def test_invalid_options_fail_before_any_work(tmp_path):
    for args, option in ((["--set", "ec.tau=-1"], "ec.tau"), (["--forget-classes", "12"], "forget.classes"),
                         (["--set", "ec.weights=0,0,0,0"], "ec.weights"), (["--methods", "ec,magic"], "methods")):
        proc = _compare(tmp_path / "out", tmp_path / "home", *args)
        assert proc.returncode == 2
        assert f"invalid option {option}" in proc.stderr
        assert not (tmp_path / "out").exists()
        assert not (tmp_path / "home" / "cache").exists()


@pytest.mark.slow
def test_missing_dataset_names_the_layout_and_the_flag(tmp_path):
    proc = _compare(tmp_path / "out", tmp_path / "home", "--preset", "mnist", "--data-dir", str(tmp_path / "nodata"))
    # the preset flag is given twice on purpose: the last one wins in argparse
    assert proc.returncode != 0
    assert "--download" in proc.stderr and "MNIST" in proc.stderr


@pytest.mark.slow
def test_teach_comparison_end_to_end(tmp_path):
    """The synthetic teach preset runs the whole comparison (small epochs); its scenario says what it is
    and its retrained oracle, which never saw the class's motif, is further from the original inside
    than the original is from itself."""
    out = tmp_path / "out"
    proc = _compare(out, tmp_path / "home", "--preset", "teach", "--methods", "rl,ec",
                    "--set", "methods.rl.epochs=1", "--set", "methods.ec.epochs=1", "--set", "eval.umap=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    sc = res["scenario"]
    assert sc["preset"] == "teach" and sc["dataset"] == "teach"
    assert sc["n_train"] == 3000 and sc["n_test"] == 400 and sc["n_forget"] == 300
    assert sc["class_names"][3] == "108deg-2.6px"
    assert list(res["runs"]) == ["original", "retrain", "rl", "ec"]
    assert res["runs"]["retrain"]["metrics"]["forget_acc"] < 0.05
    assert res["runs"]["original"]["metrics"]["forget_acc"] > 0.5
    assert R.inner_cka(res["runs"]["retrain"], res["layers"]) < 0.99
