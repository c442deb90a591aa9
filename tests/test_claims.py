"""The headline claims on the default scenario, with the real default settings (about a minute).

The same checks over other forget classes and seeds: bench/bench_claims.py (figures in the README).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _check_claims():
    spec = importlib.util.spec_from_file_location("bench_claims", ROOT / "bench" / "bench_claims.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.check_claims


@pytest.mark.slow
def test_default_digits_comparison_forgets_and_keeps_retain(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    from engine.runner import execute, prepare
    norm, _ = prepare("compare", {"preset": "digits"})
    execute("compare", norm, tmp_path / "out")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    verdict = _check_claims()(results)
    assert verdict["A_baselines_forget"], f"baselines that did not forget: {verdict['A_failures']}"
    assert verdict["B_ec_keeps_retain"], results["runs"]["ec"]["metrics"]
    # the per-layer readings are figures, not claims: on digits EC's forget CKA is not the lowest at every
    # inner layer (FT and l1-sparse go lower somewhere; measured 2026-12-04), and lower is distortion
    # when it is below retrain's. What must hold is that the headline cannot hide a layer:
    from engine import results as R
    for row in R.summary(results):
        inner = [abs(g["gap"]) for g in row["gaps"] if g["inner"] and g["gap"] is not None]
        assert row["distance"] == max(inner), row["name"]
