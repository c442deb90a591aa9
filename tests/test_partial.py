"""A comparison writes partial results as it goes (partial.json: reference rows, then each method
as soon as it is evaluated), atomically, and removes them once results.json is written."""
from __future__ import annotations

import copy

import pytest
import torch

from engine import runner, store

TINY = {"model": {"width": 8}, "train": {"epochs": 1}, "ec": {"aux_epochs": 1},
        "methods": {"ft": {"epochs": 1}, "ga": {"epochs": 1}},
        "eval": {"umap": False, "probe_epochs": 5, "max_samples": 200, "embed_per_class": 5, "epoch_cka": False}}


@pytest.mark.slow
def test_compare_writes_partial_results_then_replaces_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    writes = []
    real = store.atomic_write_json

    def spy(path, obj):
        if path.name == runner.PARTIAL:
            assert not any(p.name.startswith(runner.PARTIAL) for p in path.parent.iterdir()
                           if p.name != runner.PARTIAL), "a temporary file under the real name"
            writes.append(copy.deepcopy(obj))
        return real(path, obj)
    monkeypatch.setattr(store, "atomic_write_json", spy)
    spec, _ = runner.prepare("compare", {"preset": "digits", "overrides": TINY, "methods": ["ft", "ga"]})
    run_dir = tmp_path / "run"
    runner.execute("compare", spec, run_dir)

    assert [sorted(w["runs"]) for w in writes] == [["original", "retrain"], ["ft", "original", "retrain"],
                                                   ["ft", "ga", "original", "retrain"]]
    assert [w["pending"] for w in writes] == [["ft", "ga"], ["ga"], []]
    assert all(w["partial"] is True and w["layers"] == ["block1", "block2", "block3", "block4"] for w in writes)
    ft = writes[1]["runs"]["ft"]
    assert 0.0 <= ft["metrics"]["forget_acc"] <= 1.0 and ft["metrics"]["avg_gap"] is not None
    assert not any(k.startswith("_") for k in ft)  # no arrays or features in the JSON
    final = store.load_json(run_dir / "results.json")
    assert not (run_dir / runner.PARTIAL).exists()
    assert final["runs"]["ft"]["metrics"] == ft["metrics"]  # the partial row is the final row
    assert "partial" not in final
    # the thread count that ran it: another one moves the readings (floating-point order)
    assert final["scenario"]["threads"] == torch.get_num_threads() >= 1
    assert final["scenario"]["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()  # e.g. AVX2, AVX512
    # the base models record how they were trained, and a later comparison that takes them from the
    # cache with another thread count says so (the readings then mix two settings)
    made = runner.computed_with()
    assert final["base_trained_with"] == {"original": made, "retrain": made}
    from dashboard import logic
    assert logic.base_models_elsewhere(final) is None
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)
    try:
        spec, _ = runner.prepare("compare", {"preset": "digits", "overrides": TINY, "methods": ["ft"]})
        runner.execute("compare", spec, tmp_path / "run2")
    finally:
        torch.set_num_threads(threads)
    again = store.load_json(tmp_path / "run2" / "results.json")
    assert again["base_trained_with"] == {"original": made, "retrain": made}  # from the cache
    assert again["scenario"]["threads"] != threads
    warning = logic.base_models_elsewhere(again)
    assert f"original model came from the cache, trained with {threads} torch thread" in warning
    assert "retrain model came from the cache" in warning and "$ECLAB_HOME/cache" in warning


def test_worker_warms_umap_only_after_the_base_models(tmp_path, monkeypatch):
    """The UMAP warm-up (numba compilation) must not compete with training the original and the
    retrained model: it starts once the first job reaches its method stage (or the worker is idle)."""
    import time

    from engine import api, embed, jobs
    from engine.config import stable_hash
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    order = []
    monkeypatch.setattr(embed, "warm_umap", lambda: order.append("warm"))

    class Runner:
        JOB_KINDS = ("run", "compare", "base", "embed")

        @staticmethod
        def prepare(kind, spec):
            return {"config": dict(spec)}, stable_hash({"kind": kind, **spec})

        @staticmethod
        def execute(kind, spec, run_dir, ctx):
            ctx.emit({"type": "stage", "stage": "original", "name": "original", "fraction": 0.0})
            time.sleep(1.5)  # three polls of the warm-up thread: it must still wait
            order.append("base models done")
            ctx.emit({"type": "stage", "stage": "method", "name": "ec", "fraction": 0.0})
            end = time.monotonic() + 10
            while "warm" not in order and time.monotonic() < end:
                time.sleep(0.05)
            store.atomic_write_json(run_dir / "results.json", {"kind": kind, "runs": {}})
            return {}

    monkeypatch.setattr(jobs, "_runner", lambda: Runner)
    api.submit("run", {"x": 1})
    jobs.Worker(handle_signals=False, warm=True).run(once=True)
    assert order == ["base models done", "warm"]


def test_progress_of_the_reference_rows_comes_before_the_methods():
    from engine import jobs
    p = jobs.Progress(n_methods=10)
    vals = [p.update(e) for e in (
        {"type": "stage", "stage": "aux", "fraction": 1.0},
        {"type": "stage", "stage": "eval", "name": "original", "fraction": 0.5},
        {"type": "stage", "stage": "eval", "name": "retrain", "fraction": 0.5},
        {"type": "stage", "stage": "method", "name": "ft", "fraction": 0.0})]
    first = jobs.Progress.SPANS["method"][0]
    assert vals[1] <= first and vals[3] == pytest.approx(first)  # never 93% before the first method


def test_partial_results_are_read_from_the_running_attempt_folder(tmp_path, monkeypatch):
    """A worker writes into its attempt folder until it publishes the run folder; the pages must find
    the partial rows there (the newest attempt first), else in the run folder itself."""
    from engine import api, attempts
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    runs = store.home() / "runs"
    job = "j-20261202-0000-abcdef"
    assert api.load_partial(job) is None
    old = attempts.new_folder(runs, job, 1)
    store.atomic_write_json(old / "partial.json", {"runs": {}, "pending": ["ft", "ec"]})
    new = attempts.new_folder(runs, job, 2)
    store.atomic_write_json(new / "partial.json", {"runs": {}, "pending": ["ec"]})
    attempts.new_folder(runs, "j-20261202-0000-abcdeg", 3)  # another job's attempt is ignored
    assert api.load_partial(job)["pending"] == ["ec"]
    attempts.remove(new)
    attempts.remove(old)
    (runs / job).mkdir(parents=True)
    store.atomic_write_json(runs / job / "partial.json", {"runs": {}, "pending": []})
    assert api.load_partial(job)["pending"] == []
