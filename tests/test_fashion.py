"""Fashion-MNIST offline (issue 23): the checked download and its fallback order (fetchers injected:
no network, no apt), the stratified per-class subset in the split and the cache keys, the preset's
registration, and an audit of a `teach`-shaped model. Small IDX files written here."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine import calibrate, catalog, config, runner
from engine.checkpoints import input_shape
from engine.data import DataError, fetch, load_dataset, make_splits
from engine.data.sets import mnist
from engine.data.splits import known_train_size
from engine.events import CollectingContext
from engine.models import create_model
from tests.jobs_helpers import TINY_EVAL
from tests.test_data import _write_idx_images, _write_idx_labels

N_TRAIN, N_TEST = 40, 20


def _package(folder, seed=0):
    """The four official .gz files, tiny, in `folder`; {name: SHA-256 of the content}."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        _write_idx_images(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz=True)
        _write_idx_labels(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz=True)
    return {n: hashlib.sha256(gzip.decompress((folder / (n + ".gz")).read_bytes())).hexdigest() for n in mnist.FILES}


class Fetchers:
    """Fake official source and Debian package; records the order they were asked in."""

    def __init__(self, official_ok=False, tamper=None):
        self.calls, self.official_ok, self.tamper = [], official_ok, tamper

    def official(self, src, work):
        self.calls.append("official")
        if not self.official_ok:
            raise OSError("<urlopen error [Errno -2] Name or service not known>")
        _package(work)
        return work

    def debian(self, src, work):
        self.calls.append("debian")
        folder = work / "unpacked" / src.deb_dir
        _package(folder)
        if self.tamper:  # one byte of one file's content changed, the file re-gzipped
            gz = folder / (self.tamper + ".gz")
            raw = bytearray(gzip.decompress(gz.read_bytes()))
            raw[-1] ^= 0xFF
            gz.write_bytes(gzip.compress(bytes(raw)))
        return folder

    def pairs(self):
        return (("the official source", self.official), ("Debian's package", self.debian))


@pytest.fixture
def tiny_fashion(tmp_path, monkeypatch):
    """FASHION's known digests replaced by the tiny files' (the real ones are the official files')."""
    digests = _package(tmp_path / "reference")
    monkeypatch.setattr(mnist, "FASHION", dataclasses.replace(mnist.FASHION, gz_md5={}, sha256=digests))
    return tmp_path / "data"


def test_download_tries_the_official_source_then_debian_and_checks_the_files(tiny_fashion, monkeypatch):
    fakes = Fetchers()
    monkeypatch.setattr(fetch, "FETCHERS", fakes.pairs())
    train, test = load_dataset("fashion-mnist", data_dir=tiny_fashion, download=True)
    assert fakes.calls == ["official", "debian"]
    assert (len(train), len(test), train.classes[3]) == (N_TRAIN, N_TEST, "Dress")
    raw = tiny_fashion / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(mnist.FILES)  # uncompressed, nothing else left
    load_dataset("fashion-mnist", data_dir=tiny_fashion, download=True)
    assert fakes.calls == ["official", "debian"]  # files present: nothing fetched again


def test_the_official_source_when_it_answers(tiny_fashion, monkeypatch):
    fakes = Fetchers(official_ok=True)
    monkeypatch.setattr(fetch, "FETCHERS", fakes.pairs())
    load_dataset("fashion-mnist", data_dir=tiny_fashion, download=True)
    assert fakes.calls == ["official"]


def test_a_tampered_file_is_refused_and_nothing_is_written(tiny_fashion, monkeypatch):
    fakes = Fetchers(tamper="train-labels-idx1-ubyte")
    monkeypatch.setattr(fetch, "FETCHERS", fakes.pairs())
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_dir=tiny_fashion, download=True)
    msg = str(err.value)
    assert "train-labels-idx1-ubyte.gz from Debian's package failed its checksum" in msg
    assert "Name or service not known" in msg  # the official source's failure is named too
    assert "apt-get download dataset-fashion-mnist" in msg and str(tiny_fashion / "FashionMNIST" / "raw") in msg
    raw = tiny_fashion / "FashionMNIST" / "raw"
    assert not raw.exists() or not any(raw.iterdir())


def test_nothing_is_fetched_unless_asked(tiny_fashion, monkeypatch):
    fakes = Fetchers(official_ok=True)
    monkeypatch.setattr(fetch, "FETCHERS", fakes.pairs())
    with pytest.raises(DataError, match="--download"):
        load_dataset("fashion-mnist", data_dir=tiny_fashion)
    assert fakes.calls == []


def test_debian_fetcher_says_when_the_machine_is_not_debian(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda tool: None)
    with pytest.raises(OSError, match="not a Debian-family machine"):
        fetch.fetch_debian(mnist.FASHION, tmp_path)
    with pytest.raises(OSError, match="no package"):
        fetch.fetch_debian(mnist.MNIST, tmp_path)


def test_the_known_digests_are_the_published_and_the_measured_ones():
    for src in (mnist.FASHION, mnist.MNIST):
        assert set(src.gz_md5) == set(mnist.FILES)
        assert all(len(v) == 32 for v in src.gz_md5.values())
    assert set(mnist.FASHION.sha256) == set(mnist.FILES)
    assert mnist.FASHION.gz_md5["train-images-idx3-ubyte"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"  # zalandoresearch


# -- the subset -------------------------------------------------------------------------------------

def _pool(n_train=600, n_test=200):
    rng = np.random.default_rng(0)
    return np.concatenate([rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)]), n_train


def test_per_class_subset_is_stratified_seeded_and_independent_of_the_forget_request():
    labels, n_train = _pool()
    a = make_splits(labels, n_train, 10, [3], None, 0, per_class=7, test_per_class=4)
    assert np.bincount(labels[a.train_idx], minlength=10).tolist() == [7] * 10
    assert np.bincount(labels[a.test_idx], minlength=10).tolist() == [4] * 10
    assert a.train_idx.max() < n_train <= a.test_idx.min()
    assert set(a.forget_idx) == {i for i in a.train_idx if labels[i] == 3} and len(a.forget_idx) == 7
    b = make_splits(labels, n_train, 10, [3], None, 0, per_class=7, test_per_class=4)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.sizes())  # same seed, same subset
    c = make_splits(labels, n_train, 10, [3], None, 1, per_class=7, test_per_class=4)
    assert not np.array_equal(a.train_idx, c.train_idx)
    for other in (make_splits(labels, n_train, 10, [5], None, 0, per_class=7, test_per_class=4),
                  make_splits(labels, n_train, 10, None, 0.1, 0, per_class=7, test_per_class=4)):
        assert np.array_equal(other.train_idx, a.train_idx) and np.array_equal(other.test_idx, a.test_idx)
    whole = make_splits(labels, n_train, 10, [3], None, 0, per_class=10_000)
    assert len(whole.train_idx) == n_train and len(whole.test_idx) == len(labels) - n_train


def test_known_train_size_counts_the_subset():
    assert known_train_size("fashion-mnist", 0.25, 0, per_class=200) == 2000
    assert known_train_size("fashion-mnist", 0.25, 0) == 60000
    from sklearn.datasets import load_digits
    labels = load_digits().target
    assert known_train_size("digits", 0.25, 2, per_class=20) == \
        len(make_splits(labels, None, 10, [3], None, 2, 0.25, per_class=20).train_idx) == 200


def test_the_subset_is_part_of_every_cache_key_and_unset_keys_stay_as_they_were():
    base = config.make_config("fashion-mnist")
    assert (base.data.per_class, base.data.test_per_class) == (200, 100)
    for over in ({"per_class": 300}, {"test_per_class": 50}, {"per_class": None}):
        other = config.make_config("fashion-mnist", {"data": over})
        for key in (config.original_key, config.retrain_key, config.second_original_key, config.aux_key):
            assert key(other) != key(base), (over, key.__name__)
    digits = config.scenario_dict(config.make_config("digits"))
    assert "per_class" not in digits["data"] and "test_per_class" not in digits["data"]
    with pytest.raises(config.ConfigError, match="data.per_class"):
        config.make_config("fashion-mnist", {"data": {"per_class": 0}})


def test_the_fashion_preset_runs_its_own_recipes_without_a_calibration_search():
    cfg = config.make_config("fashion-mnist")
    assert config.PRESETS["fashion-mnist"]["methods"] == catalog.recipes("fashion")
    assert set(catalog.recipes("fashion")) == set(catalog.default_compare())  # scrub_alt (not in it): untuned
    assert "fashion-mnist" in calibrate.AUTO_PRESETS
    for name in catalog.default_compare():
        mode, why = calibrate.resolve_mode(cfg, "compare", name)
        assert mode == "off" and "tuned on this scenario" in why, name
    other = config.make_config("fashion-mnist", {"forget": {"classes": [0]}})
    assert calibrate.resolve_mode(other, "compare", "ft")[0] == "on"


def test_a_fashion_comparison_downloads_and_trains_on_the_subset(tiny_fashion, monkeypatch, tmp_path):
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    fakes = Fetchers()
    monkeypatch.setattr(fetch, "FETCHERS", fakes.pairs())
    over = {"data": {"data_dir": str(tiny_fashion), "download": True, "per_class": 3, "test_per_class": 1},
            "model": {"width": 8}, "train": {"epochs": 1}, "eval": {**TINY_EVAL, "seed_band": "off",
                                                                      "retrain_band": "off"},
            "calibrate": "off", "methods": {"ft": {"epochs": 1}}}
    spec, _ = runner.prepare("compare", {"preset": "fashion-mnist", "overrides": over, "methods": ["ft"]})
    runner.execute("compare", spec, tmp_path / "run", CollectingContext())
    res = runner.store.load_json(tmp_path / "run" / "results.json")
    assert fakes.calls == ["official", "debian"]
    assert (res["scenario"]["n_train"], res["scenario"]["n_test"], res["scenario"]["n_forget"]) == (30, 10, 3)


# -- audit of a teach model -------------------------------------------------------------------------

def _teach_audit(tmp_path) -> dict:
    over = {"model": {"width": 8}, "eval": TINY_EVAL}
    torch.manual_seed(0)
    path = tmp_path / "teach.safetensors"
    save_file(create_model("small_cnn", 10, 1, 16, 8).state_dict(), str(path))
    norm, _ = runner.prepare("audit", {"preset": "teach", "overrides": over, "original": str(path),
                                       "unlearned": [f"mine={path}"]})
    return norm


def test_a_teach_shaped_checkpoint_is_accepted_for_audit(tmp_path):
    """The audit form offers `teach`; its input shape (and every family's) comes from the registration:
    the checkpoint is loaded into a 16x16 grey small CNN at submit."""
    assert input_shape(config.make_config("teach")) == (10, 1, 16)
    for name, info in catalog.ALL_DATASETS.items():
        cfg = config.make_config("custom", {"data": {"dataset": name, "data_dir": str(tmp_path)}})
        assert input_shape(cfg) == (info.num_classes, info.channels, info.size), name
    assert _teach_audit(tmp_path)["config"]["data"]["dataset"] == "teach"


@pytest.mark.slow
def test_a_teach_shaped_checkpoint_audits(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLAB_HOME", str(tmp_path / "home"))
    runner.execute("audit", _teach_audit(tmp_path), tmp_path / "run", CollectingContext())
    res = runner.store.load_json(tmp_path / "run" / "results.json")
    assert res["kind"] == "audit" and res["scenario"]["dataset"] == "teach"
    assert set(res["runs"]) == {"original", "mine"}
    assert res["runs"]["mine"]["cka_vs_original"]["forget"]["block1"] == pytest.approx(1.0, abs=1e-3)


# -- the Teach page's "where it appears" section ---------------------------------------------------

def _scenario(name, retrain, excess, forgot=True):
    layers = list(retrain)
    return {"name": name, "dataset": name, "arch": "small_cnn", "forget": "classes 3", "layers": layers,
            "retrain_cka": retrain, "retrain_cka_mean": sum(retrain.values()) / len(layers),
            "probe_original": 0.9, "probe_retrain": 0.8, "excess": excess,
            "median_excess": {p: sorted(e[p] for e in excess.values())[len(excess) // 2] for p in layers},
            "baselines_forgot": {n: forgot for n in excess}}


def test_where_it_appears_reads_each_scenario_from_its_numbers():
    from dashboard import where_it_appears as W
    appears = _scenario("teach", {"b1": 0.9, "b2": 0.8}, {"ft": {"b1": 0.02, "b2": 0.09}, "ga": {"b1": 0.03, "b2": 0.1}})
    generic = _scenario("digits", {"b1": 0.99, "b2": 0.97}, {"ft": {"b1": 0.0, "b2": 0.01}, "ga": {"b1": 0.01, "b2": 0.02}})
    rows = W.rows({"scenarios": [appears, generic]})
    assert [r["data set"] for r in rows] == ["teach (synthetic textures)", "digits (8×8 handwriting)"]
    assert rows[0]["reading"].startswith("appears") and rows[0]["baselines ≥ +0.05 inside"] == "2 of 2"
    assert rows[1]["reading"].startswith("does not appear") and rows[1]["baselines ≥ +0.05 inside"] == "0 of 2"
    assert rows[0]["median baseline excess per layer"] == "+0.030 / +0.100"
    assert W.spread(generic) == "+0.000 to +0.020"
    # read layer by layer, not in a mean: the layer retrain moved furthest and where the baselines kept most
    assert "retrain moved b2 away from the original (CKA 0.80)" in rows[0]["reading"]
    assert "+0.10 closer at b2" in rows[0]["reading"]
    assert "retrain keeps even b2 at 0.97" in rows[1]["reading"]
    # one class-specific layer is enough, where a mean over layers (0.905) would call them all generic
    one = _scenario("one", {"b1": 0.99, "b2": 0.82}, {"ft": {"b1": 0.0, "b2": 0.01}})
    assert W.reading(one).startswith("b2 is class-specific (retrain 0.82)")


def test_the_where_it_appears_asset_is_the_bench_scripts():
    from dashboard import where_it_appears as W
    doc = W.load()
    assert doc is not None, "assets/where_it_appears.json: run bench/bench_where.py"
    assert doc["command"].startswith("python bench/bench_where.py")
    # a command anyone can run: no handed-in results of the measuring machine (it named /tmp/meas/... files)
    assert "--from" not in doc["command"] and "/tmp" not in doc["command"]
    assert {sc["dataset"] for sc in doc["scenarios"]} >= {"teach", "digits", "fashion-mnist"}
    assert len(W.rows(doc)) == len(doc["scenarios"])
    # the one row measured otherwise than the command says is named, with its log (which exists)
    log = re.search(r"bench/results/\S+\.txt", doc["note"]).group(0)
    assert "narrow ResNet" in doc["note"] and (Path(__file__).resolve().parent.parent / log).is_file()


def test_bench_where_stores_a_reproducible_command():
    import importlib.util
    path = Path(__file__).resolve().parent.parent / "bench" / "bench_where.py"
    spec = importlib.util.spec_from_file_location("bench_where", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.reproduce_command(["teach", "fashion-mnist:narrow_resnet"], ["eval.umap=false"]) == (
        "python bench/bench_where.py --scenario teach --scenario fashion-mnist:narrow_resnet --set eval.umap=false")
