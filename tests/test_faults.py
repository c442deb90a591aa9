"""Faults of issue 21: torn or damaged sweep journals, a calibration cache with wrong types, checkpoints
that expand when read or hold NaN, non-string keys or non-float tensors, `submit --calibrate`, a full
disk under the read-only commands, run folders left by failed runs, and refused uploads."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine import cli, store
from engine.checkpoints import CheckpointFormatError, check_path, load_model
from engine.config import make_config
from engine.models import create_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from jobs_helpers import spec, worker_env  # noqa: E402


from test_audit import home  # noqa: E402,F401 - the fixture: a private ECLAB_HOME, no worker autostart


def _rezip(tmp_path: Path, numel: int) -> Path:
    """A torch.save file of `numel` float zeros, re-zipped with ZIP_DEFLATED: tiny on disk, large when read."""
    big, bomb = tmp_path / "big.pth", tmp_path / "bomb.pth"
    torch.save({"x": torch.zeros(numel)}, big)
    with zipfile.ZipFile(big) as zi, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            zo.writestr(info.filename, zi.read(info.filename))
    big.unlink()
    return bomb


# -- item 1: sweep journals --------------------------------------------------------------------------

def _study(path: Path, n: int = 3):
    import optuna
    from engine.sweep import storage
    st = optuna.create_study(study_name="rt2", storage=storage.open_storage(str(path)))
    st.set_user_attr("eclab_sweep", True)
    for i in range(n):
        t = st.ask()
        st.tell(t, float(i))
    return st


def _load(path: Path):
    import optuna
    from engine.sweep import storage
    return optuna.load_study(study_name="rt2", storage=storage.open_storage(str(path)))


TORN = b'{"op_code": 5, "worker_id": "x", "trial'


def test_torn_journal_tail_is_set_aside_and_later_records_are_kept(home, capsys):
    from engine.sweep.storage import journal_path
    path = journal_path("rt2")
    live = _study(path)
    intact = path.read_bytes()
    with open(path, "ab") as fh:  # what kill -9 in a write leaves
        fh.write(TORN)
    live.set_user_attr("n_trials", 7)  # a worker still running appends: never glued onto the torn line
    st = _load(path)
    assert len(st.trials) == 3 and st.user_attrs["n_trials"] == 7
    aside = list(path.parent.glob("rt2.journal.torn-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == TORN
    assert path.read_bytes().startswith(intact)
    with open(path, "ab") as fh:  # torn again, found when the journal is opened
        fh.write(TORN)
    st = _load(path)
    t = st.ask()
    st.tell(t, 9.0)
    assert len(_load(path).trials) == 4
    assert len(list(path.parent.glob("rt2.journal.torn-*"))) == 2  # the first tear's bytes are not overwritten
    err = capsys.readouterr().err
    assert err.count("warning: sweep journal") == 2 and str(path) in err and ".torn-" in err


def test_journal_cut_short_keeps_its_intact_records(home):
    from engine.sweep.storage import journal_path
    path = journal_path("rt2")
    _study(path, 6)
    data = path.read_bytes()
    cut = data.rfind(b"\n", 0, len(data) - 10) + 20  # inside the last-but-one record
    path.write_bytes(data[:cut])
    n_complete = data[:cut].count(b"\n")
    assert len(_load(path).trials) >= 5
    assert path.read_bytes() == data[:data.rfind(b"\n", 0, cut) + 1] and path.read_bytes().count(b"\n") == n_complete


@pytest.mark.parametrize("damage", ["random bytes", "a bad line"])
def test_journal_damaged_before_intact_records_is_refused_in_one_line(home, damage):
    from engine.sweep import discover_studies
    from engine.sweep.storage import SweepError, journal_path
    path = journal_path("rt2")
    _study(path)
    data = path.read_bytes()
    at = data.index(b"\n") + 1
    junk = bytes(range(128, 256)) + b"\n" if damage == "random bytes" else b'{"op_code": 5, "tri\n'
    path.write_bytes(data[:at] + junk + data[at:])
    with pytest.raises(SweepError) as info:
        _load(path)
    msg = str(info.value)
    assert "\n" not in msg and f"sweep journal {path} is damaged at byte {at}" in msg and f"mv {path} {path}.bad" in msg
    assert path.read_bytes() == data[:at] + junk + data[at:]  # nothing changed
    row = [s for s in discover_studies() if s["storage"] == str(path)][0]
    assert row["study"] is None and msg in row["error"]


def test_sweep_show_on_a_torn_journal_works_from_the_command_line(home):
    from engine.sweep.storage import journal_path
    path = journal_path("rt2")
    _study(path)
    with open(path, "ab") as fh:
        fh.write(TORN)
    r = subprocess.run([sys.executable, "-m", "engine", "sweep-show", "--study", "rt2"], cwd=ROOT,
                       env=worker_env(home), capture_output=True, text=True, timeout=120)
    assert "Expecting" not in r.stderr and "Traceback" not in r.stderr
    assert "warning: sweep journal" in r.stderr and list(path.parent.glob("rt2.journal.torn-*"))


# -- item 3: the calibration cache -------------------------------------------------------------------

def test_calibration_cache_with_wrong_types_is_set_aside(home, capsys):
    from engine import calibrate
    key = "calib-test"
    good = {"used": True, "mode": "on", "choice": {"lr": 0.01, "epochs": 2}, "grid": [], "reached": True}
    calibrate.save_cached(key, good)
    assert calibrate.load_cached(key) == good
    for choice in ({"lr": "abc", "epochs": -1}, {"lr": 0.01, "epochs": 1.5}, {"lr": float("nan"), "epochs": 2},
                   {"lr": True, "epochs": 2}, "fast"):
        calibrate.save_cached(key, {**good, "choice": choice})
        assert calibrate.load_cached(key) is None, choice
        assert not (store.cache_dir(key) / "calibration.json").exists()
    assert len(list(store.cache_dir(key).glob(".calibration.json.bad-*"))) == 5
    assert "calibration cache" in capsys.readouterr().err


# -- items 4-7: checkpoints ----------------------------------------------------------------------------

def _state():
    return create_model("small_cnn", 10, 1, 8, 32).state_dict()


def test_compressed_checkpoint_is_measured_by_what_it_expands_to(tmp_path):
    bomb = _rezip(tmp_path, 2 << 20)  # 8 MB of zeros
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointFormatError, match=r"expands to 8 MB when read, over the 2 MB limit"):
        check_path(bomb, max_mb=2)
    st = tmp_path / "m.safetensors"
    save_file({"x": torch.zeros(4)}, str(st))
    raw = bytearray(st.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["x"]["data_offsets"] = [0, 3 << 20]
    text = json.dumps(header).encode()
    (tmp_path / "lies.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    with pytest.raises(CheckpointFormatError, match="expands to 3 MB"):
        check_path(tmp_path / "lies.safetensors", max_mb=2)
    assert check_path(st, max_mb=2) == st.resolve()


def _bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    sd = _state()
    key = "block1.0.weight"
    nan = {**sd, key: sd[key].clone().index_fill_(0, torch.tensor([0]), float("inf"))}
    cases = {"nan": (nan, rf"tensor {key} holds 9 NaN or infinite"),
             "keys": ({1: torch.zeros(1)}, r"keys that are not names \(1\)"),
             "complex": ({k: v.to(torch.complex64) if v.is_floating_point() else v for k, v in sd.items()},
                         r"is complex64, not a floating type"),
             "int": ({k: v.to(torch.int64) if v.is_floating_point() else v for k, v in sd.items()},
                     r"is int64, not a floating type")}
    out = {}
    for name, (state, pattern) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(state, path)
        out[name] = (path, pattern)
    return out


def test_bad_tensors_are_refused_naming_the_file_and_tensor(tmp_path):
    cfg = make_config("digits")
    for name, (path, pattern) in _bad_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointFormatError, match=pattern) as info:
            load_model(path, cfg, "original")
        assert str(path) in str(info.value) and "\n" not in str(info.value), name
    good = tmp_path / "good.pth"
    sd = _state()
    assert sd["block1.1.num_batches_tracked"].dtype == torch.int64
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, good)
    load_model(good, cfg, "original")  # float16 weights and the integer BatchNorm counters load


def test_audit_and_submit_refuse_bad_checkpoints_in_one_line(home, tmp_path, capsys):
    bad = _bad_checkpoints(tmp_path)
    good = tmp_path / "good.pth"
    torch.save(_state(), good)
    for name, (path, _) in bad.items():
        for cmd in (["audit", "--out", str(tmp_path / "out")], ["submit", "--kind", "audit"]):
            rc = cli.main([*cmd, "--original", str(good), "--unlearned", f"x={path}"])
            err = capsys.readouterr().err
            assert rc != 0 and "Traceback" not in err and str(path) in err, (name, cmd, err)
            assert len([ln for ln in err.splitlines() if ln.startswith("error")]) == 1
    from engine import api
    assert api.list_jobs() == []


# -- items 4 and 10: the dashboard's upload path -----------------------------------------------------

@pytest.mark.slow
def test_uploads_are_checked_in_a_child_and_refused_ones_deleted(home, tmp_path, monkeypatch):
    from engine import api
    from engine.audit import AuditError
    good = tmp_path / "good.pth"
    torch.save(_state(), good)
    bad = _bad_checkpoints(tmp_path)["nan"][0]
    kept = api.save_upload("orig.pth", good.read_bytes())
    refused = api.save_upload("nan.pth", bad.read_bytes())
    with pytest.raises(AuditError, match="NaN or infinite"):
        api.submit_isolated({"preset": "digits", "original": kept, "unlearned": {"x": refused}})
    assert api.list_jobs() == []
    api.discard_uploads([kept, refused])
    assert not Path(refused).exists() and not Path(kept).exists()  # neither is used by a job
    kept = api.save_upload("orig.pth", good.read_bytes())
    job = api.submit_isolated({"preset": "digits", "original": kept, "unlearned": {"x": kept}})
    assert api.get_job(job["id"])["state"] == "queued"
    api.discard_uploads([kept])
    assert Path(kept).exists()  # a queued audit reads it
    bomb = _rezip(tmp_path, 4 << 20)
    from engine import checkpoints
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_MB", 2)  # ECLAB_MAX_CHECKPOINT_MB=2
    with pytest.raises(CheckpointFormatError, match="expands to 16 MB"):
        api.save_upload("bomb.pth", bomb.read_bytes())
    assert [p.name for p in (home / "uploads").iterdir()] == [Path(kept).parent.name]


# -- item 8 ------------------------------------------------------------------------------------------

def test_submit_takes_calibrate(home):
    from engine.jobs import build_spec
    args = cli.build_parser().parse_args(["submit", "--preset", "digits", "--calibrate", "on"])
    assert build_spec(args)["overrides"]["calibrate"] == "on"


# -- item 9: a full disk, and folders of failed runs ---------------------------------------------------

def _full_disk(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI with writes limited to 16 bytes per file: a full disk as SQLite sees it."""
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=worker_env(home),
                          capture_output=True, text=True, timeout=180,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16)))


def test_read_only_commands_work_on_a_full_disk(home):
    from engine import api
    job = api.submit("run", spec("ft"))["id"]
    r = _full_disk(home, "jobs")
    assert r.returncode == 0 and job in r.stdout, r.stderr
    assert r.stderr.count("warning: the job database") == 1 and "read-only" in r.stderr
    r = _full_disk(home, "show", job)
    assert r.returncode == 0 and f"job       {job}" in r.stdout, r.stderr
    r = _full_disk(home, "submit", "--method", "ft", "--set", "seed=7")
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(errors) == 1 and "jobs.sqlite" in errors[0]
    assert [j["id"] for j in api.list_jobs()] == [job]


def test_clean_lists_and_deletes_folders_of_failed_runs(home, capsys):
    from engine import api
    from engine.jobs import _db, transaction
    failed = api.submit("run", spec("ft"))["id"]
    queued = api.submit("run", spec("ft", ft={"lr": 0.5}))["id"]
    with _db() as con, transaction(con):
        con.execute("UPDATE jobs SET state = 'failed', error = 'the run diverged' WHERE id = ?", (failed,))
    runs = home / "runs"
    for name in (failed, queued, "sw-rt2-2-e466", "sw-rt2-3-fresh", "done-run"):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text("{}")
        (runs / name / "log.txt").write_text("started\n")
    (runs / "done-run" / "results.json").write_text("{}")
    old = time.time() - 7200
    for f in [runs / "sw-rt2-2-e466", *(runs / "sw-rt2-2-e466").iterdir()]:
        os.utime(f, (old, old))
    assert cli.main(["clean"]) == 0
    out = capsys.readouterr().out
    assert f"{runs / failed}  job failed: the run diverged" in out and "sw-rt2-2-e466" in out
    assert "2 run folder(s) without results found" in out and "sw-rt2-3-fresh" not in out and queued not in out
    assert all((runs / n).exists() for n in (failed, "sw-rt2-2-e466"))
    assert cli.main(["clean", "--delete"]) == 0
    assert sorted(p.name for p in runs.iterdir()) == sorted([queued, "sw-rt2-3-fresh", "done-run"])
