"""The audit unit of work: measure models trained elsewhere exactly as a comparison measures its own.

`python -m engine audit --original PATH [--retrain PATH] --unlearned NAME=PATH [...] --out DIR`
(and `submit --kind audit`) loads the checkpoints (engine.checkpoints: safe, strict), rebuilds the
scenario's data and splits from the configuration (class-wise from the forget flags, or sample-wise
from an index file), and runs the comparison's own evaluation and run-folder writing
(engine.runner.evaluate_references / _finish_runs), so results.json has kind "audit" and every page
shows it. Without a retrained model there is no gold standard: CKA is measured against the
original only and Avg. Gap is null.

Every input is checked before anything is queued or written: paths (exists, is a file, size cap),
formats, the architecture's keys and shapes, the head's class count, run names, the index file.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import results as results_schema

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,39}$")
RESERVED = ("original", "retrain")
MAX_INDEX_MB = 64
MAX_UPLOAD_MB = 200  # Streamlit's own upload limit; a CIFAR ResNet-50 state dict is ~95 MB


class AuditError(ValueError):
    """A bad audit request (run names, index file, changed files)."""


# -- the request -----------------------------------------------------------------------------------

def parse_unlearned(items) -> dict[str, str]:
    """{"name": path} from ["NAME=PATH", ...] (or a dict); names become run names on every page."""
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items or []:
            if not isinstance(item, str) or "=" not in item:
                raise AuditError(f"--unlearned takes NAME=PATH (e.g. salun=/models/salun.pth), got {item!r}")
            name, path = item.split("=", 1)
            pairs.append((name.strip(), path.strip()))
    if not pairs:
        raise AuditError("name at least one unlearned model: --unlearned NAME=PATH (e.g. ec=/models/ec.pth.tar)")
    out: dict[str, str] = {}
    for name, path in pairs:
        if not NAME.match(name) or results_schema.SEP in name:  # "__" separates arrays.npz key parts
            raise AuditError(f"unlearned model name {name!r}: use letters, digits and _ . + - (at most 40, no '__')")
        if name in RESERVED:
            raise AuditError(f"unlearned model name {name!r} is reserved: pass that model as --{name} instead")
        if name in out:
            raise AuditError(f"unlearned model name {name!r} is given twice: give each model its own name")
        out[name] = path
    return out


def read_indices(path) -> list[int]:
    """Sample ids to forget from a .npy file (1-d integers) or a text file with one index per line."""
    from .checkpoints import check_path
    p = check_path(path, "forget indices", MAX_INDEX_MB)
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            lines = [ln.split("#")[0].strip() for ln in p.read_text().splitlines()]
            arr = np.asarray([int(ln) for ln in lines if ln])
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise AuditError(f"forget indices: {p} is neither a .npy array nor a text file with one integer per line "
                         f"({err})") from None
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise AuditError(f"forget indices: {p} holds a {arr.dtype} array of shape {arr.shape}; give a 1-d array of "
                         f"integer sample ids")
    if arr.size == 0:
        raise AuditError(f"forget indices: {p} is empty: list the training samples to forget")
    if arr.min() < 0 or len(np.unique(arr)) != len(arr):
        raise AuditError(f"forget indices: {p} must list distinct sample ids >= 0")
    return sorted(int(i) for i in arr)


def prepare_audit(spec: dict) -> tuple[dict, str]:
    """Validate an audit request (loading every checkpoint once); return (normalised spec, hash).
    Raw specs: {"preset", "overrides", "original", "retrain", "unlearned", "forget_indices" (a path)};
    the normalised spec holds the config, absolute paths, their SHA-256 and the indices themselves."""
    from .checkpoints import check_path, file_sha256, load_model
    from .config import ConfigError, stable_hash
    from .runner import _hashable, config_from_spec
    if not isinstance(spec, dict):
        raise ConfigError("spec", "must be a JSON object")
    known = {"preset", "overrides", "config", "original", "retrain", "unlearned", "forget_indices", "sha256"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(unknown[0], f"unknown field in an audit spec (use {', '.join(sorted(known))})")
    cfg = config_from_spec({k: spec[k] for k in ("preset", "overrides", "config") if k in spec})
    indices = spec.get("forget_indices")
    if indices is not None:
        if cfg.forget.random is None:
            raise AuditError("--forget-indices is sample-wise forgetting: pass --forget-random P too (the share of "
                             "training samples the file holds; it labels the run) instead of --forget-classes")
        indices = read_indices(indices) if isinstance(indices, (str, Path)) else sorted({int(i) for i in indices})
    files = {"original": spec.get("original")}
    if spec.get("retrain"):
        files["retrain"] = spec["retrain"]
    files.update(parse_unlearned(spec.get("unlearned")))
    paths = {role: str(check_path(p, _role(role))) for role, p in files.items()}  # all paths before any load
    for role, p in paths.items():
        load_model(p, cfg, _role(role))
    sha = {role: file_sha256(Path(p)) for role, p in paths.items()}
    norm = {"config": cfg.model_dump(), "original": paths["original"], "retrain": paths.get("retrain"),
            "unlearned": {n: paths[n] for n in files if n not in RESERVED}, "forget_indices": indices, "sha256": sha}
    key = {"kind": "audit", "config": _hashable(cfg), "sha256": sha, "names": list(norm["unlearned"]),
           "retrain": "retrain" in paths, "indices": stable_hash(indices) if indices else None}
    return norm, stable_hash(results_schema.versioned(key))


def _role(role: str) -> str:
    return role if role in RESERVED else f"unlearned model {role!r}"


# -- the job -----------------------------------------------------------------------------------------

def _with_indices(sc, indices: list[int]):
    """The scenario with the forget set from an index file (sample-wise forgetting)."""
    from dataclasses import replace
    from .config import ForgetConfig
    s = sc.splits
    idx = np.asarray(indices, dtype=np.int64)
    outside = idx[~np.isin(idx, s.train_idx)]
    if len(outside):
        raise AuditError(f"forget indices {outside[:5].tolist()} are not training samples of this scenario "
                         f"({len(s.train_idx)} training samples; ids as in a run's splits.npz train_idx)")
    retain = np.setdiff1d(s.train_idx, idx).astype(np.int64)
    if len(retain) == 0:
        raise AuditError("the forget indices cover every training sample: nothing would be retained")
    splits = replace(s, forget_idx=idx, retain_idx=retain, forget_test_idx=np.zeros(0, np.int64),
                     retain_test_idx=s.test_idx.copy())
    share = min(max(len(idx) / len(s.train_idx), 1e-9), 1 - 1e-9)
    cfg = sc.cfg.model_copy(update={"forget": ForgetConfig(random=share)})
    return replace(sc, cfg=cfg, splits=splits)


def run_audit(spec: dict, run_dir: Path, ctx) -> dict:
    import torch
    from .checkpoints import file_sha256, load_model
    from .config import validate
    from .evaluate import prepare_references
    from .runner import Bases, _finish_runs, _load, eval_set, evaluate_references
    cfg = validate(spec["config"])
    files = {"original": spec["original"], **({"retrain": spec["retrain"]} if spec.get("retrain") else {}),
             **spec["unlearned"]}
    for role, p in files.items():
        if not Path(p).is_file() or file_sha256(Path(p)) != spec["sha256"][role]:
            raise AuditError(f"{_role(role)}: {p} is missing or changed since the audit was queued: submit it again")
    sc = _load(cfg, ctx)
    if spec.get("forget_indices"):
        sc = _with_indices(sc, spec["forget_indices"])
    t0 = time.perf_counter()
    models = {}
    for role, p in files.items():
        ctx.emit({"type": "stage", "stage": "original" if role in RESERVED else "method", "name": role,
                  "fraction": 0.0, "message": f"loading {role} from {p}"})
        m = load_model(p, sc.cfg, _role(role), sc.num_classes, sc.in_channels, sc.image_size).to(sc.device)
        models[role] = m.to(memory_format=torch.channels_last) if sc.device.type == "cuda" else m
    refs = {r: models[r] for r in RESERVED if r in models}
    bases = Bases(original=refs["original"], retrain=refs.get("retrain"), extras=None,
                  seconds={"load": time.perf_counter() - t0})
    ev = eval_set(sc)
    prepare_references(ev, refs)
    rows, arrays = evaluate_references(ev, refs, ctx)
    for role, row in rows.items():
        row["params"] = {"source": files[role], "sha256": spec["sha256"][role]}
    results = [(name, models[name], {"method": name, "label": name, "seconds": None,
                                     "params": {"source": p, "sha256": spec["sha256"][name]}})
               for name, p in spec["unlearned"].items()]
    extra = {"audit": {"original": spec["original"], "retrain": spec.get("retrain"),
                       "unlearned": dict(spec["unlearned"]), "sha256": spec["sha256"],
                       "forget_indices": len(spec["forget_indices"]) if spec.get("forget_indices") else None,
                       "reference": "original and retrain" if "retrain" in refs else "original only"}}
    return _finish_runs(sc, ev, bases, rows, arrays, results, run_dir, ctx, "audit", extra=extra)


# -- command line ------------------------------------------------------------------------------------

def add_model_flags(p: argparse.ArgumentParser) -> None:
    """The audit's own flags, shared by `audit` and `submit --kind audit`."""
    p.add_argument("--original", metavar="PATH", help="audit: the original model (.safetensors, .pt, .pth, .pth.tar)")
    p.add_argument("--retrain", metavar="PATH", help="audit: the retrained oracle (optional: the gold standard)")
    p.add_argument("--unlearned", action="append", default=[], metavar="NAME=PATH",
                   help="audit: an unlearned model, repeatable (e.g. --unlearned salun=/models/salun.pth)")
    p.add_argument("--arch", help="audit: architecture of the checkpoints (small_cnn, resnet18, resnet50, vit_tiny, "
                                  "tv_resnet18, tv_resnet50); default: the preset's")
    p.add_argument("--forget-indices", metavar="FILE",
                   help="audit: sample-wise forget set (.npy or one index per line), with --forget-random P")


def spec_from_args(args, overrides: dict) -> dict:
    """An audit spec from the parsed flags and the scenario overrides."""
    if not args.original:
        raise AuditError("an audit needs --original PATH (and --unlearned NAME=PATH, optionally --retrain PATH)")
    if args.arch:
        overrides = {**overrides, "model": {**overrides.get("model", {}), "arch": args.arch}}
    spec = {"preset": args.preset, "overrides": overrides, "original": args.original,
            "unlearned": parse_unlearned(args.unlearned)}
    if args.retrain:
        spec["retrain"] = args.retrain
    if args.forget_indices:
        spec["forget_indices"] = args.forget_indices
    return spec


def cmd_audit(args) -> int:
    from .compare import PrintingContext, format_table, scenario_overrides
    from .runner import execute, prepare
    norm, _ = prepare("audit", spec_from_args(args, scenario_overrides(args)))  # every check before any write
    out = Path(args.out)
    if (out / "results.json").exists():
        raise AuditError(f"{out} already holds results.json: pick another --out folder")
    created = not out.exists()
    t0 = time.perf_counter()
    try:
        execute("audit", norm, out, PrintingContext())
    except BaseException:
        if created:  # leave nothing half-written behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    results = json.loads((out / "results.json").read_text())
    print(format_table(results))
    if not norm.get("retrain"):
        print("no retrained reference supplied: CKA vs the original only", file=sys.stderr)
    print(f"wrote {out / 'results.json'} in {time.perf_counter() - t0:.1f}s")
    if args.record:
        from .jobs import record_external
        job = record_external("audit", norm, out)
        print(f"recorded as job {job['id']}: the dashboard lists it", file=sys.stderr)
    return 0


def save_upload(name: str, data: bytes) -> str:
    """Store an uploaded checkpoint under $ECLAB_HOME/uploads/<sha256>/ and return its path."""
    import hashlib
    from . import store
    if len(data) > MAX_UPLOAD_MB * 2**20:
        raise AuditError(f"{name} is {len(data) / 2**20:.0f} MB, over the {MAX_UPLOAD_MB} MB upload limit: "
                         f"give its path on the server instead")
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(name).name)[-80:] or "model.pt"
    path = uploads_dir() / hashlib.sha256(data).hexdigest()[:16] / safe
    if not path.exists():
        store.atomic_write_bytes(path, data)
    try:  # the header-level checks only (size, declared expanded size): nothing is decompressed here
        from .checkpoints import check_path
        check_path(path, name)
    except ValueError:
        discard_uploads([path])
        raise
    return str(path)


def uploads_dir() -> Path:
    from . import store
    return store.home() / "uploads"


def discard_uploads(paths) -> list[Path]:
    """Delete uploads (their uploads/<sha>/ folders) that no job names: what an audit refused. An upload
    a queued or finished audit uses is kept. Returns the folders removed."""
    from .jobs import list_jobs
    root = uploads_dir().resolve()
    folders = {Path(p).resolve().parent for p in paths if Path(p).resolve().parent.parent == root}
    if not folders:
        return []
    try:
        specs = [j["spec"] for j in list_jobs(limit=None, kinds="audit") if isinstance(j["spec"], dict)]
    except RuntimeError:  # the job table cannot be read: keep them all rather than guess
        return []
    used = {str(p) for s in specs for p in [s.get("original"), s.get("retrain"), *(s.get("unlearned") or {}).values()]}
    gone = [f for f in sorted(folders) if f.is_dir() and not any(str(x) in used for x in f.iterdir())]
    for f in gone:
        shutil.rmtree(f, ignore_errors=True)
    return gone


# A long-lived process (the dashboard's server) queues an audit through a child process: reading the
# checkpoints (up to MAX_UPLOAD_MB each, or what a path names) happens there, under a memory cap, so a
# huge or hostile file can only take the child down. torch and the engine alone need about 1.5 GB of it.
CHECK_MEMORY_MB = int(os.environ.get("ECLAB_AUDIT_CHECK_MB", 1536 + 4 * MAX_UPLOAD_MB))


def submit_isolated(spec: dict) -> dict:
    """engine.jobs.submit("audit", spec) run in a child process with at most CHECK_MEMORY_MB of memory:
    the job dict, or ConfigError / AuditError with the child's one-line reason."""
    import subprocess
    from . import store
    env = {**os.environ, "ECLAB_HOME": str(store.home()),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(store.PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        r = subprocess.run([sys.executable, "-c", "from engine.audit import _submit_child; _submit_child()"],
                           input=json.dumps(spec), capture_output=True, text=True, env=env, timeout=900)
        out = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode in (0, 2) and r.stdout.strip() else {}
    except (subprocess.TimeoutExpired, ValueError):
        r, out = None, {}
    if "job" in out:
        return out["job"]
    if out.get("option"):
        from .config import ConfigError
        raise ConfigError(out["option"], out["error"])
    if "error" in out and "allocate" not in out["error"]:
        raise AuditError(out["error"])
    detail = out.get("error") or (f"exit status {r.returncode}: {' '.join(r.stderr.split()[-30:])}" if r
                                  else "still running after 15 minutes")
    raise AuditError(f"checking the checkpoints failed in its memory-capped process ({detail}): pass smaller files "
                     f"(the model's state dict only), or raise ECLAB_AUDIT_CHECK_MB (now {CHECK_MEMORY_MB} MB)")


def _submit_child() -> None:
    """The child of submit_isolated: the spec on stdin; on stdout one JSON line, {"job": ...} or
    {"error": one line, "option": the ConfigError's option or None} (exit status 2)."""
    import resource
    resource.setrlimit(resource.RLIMIT_DATA, (CHECK_MEMORY_MB * 2**20, CHECK_MEMORY_MB * 2**20))
    from . import store
    from .jobs import submit
    try:
        job = submit("audit", json.load(sys.stdin))
    except (ValueError, RuntimeError, MemoryError) as err:
        print(json.dumps({"error": " ".join(str(err).split()) or type(err).__name__,
                          "option": getattr(err, "option", None)}))
        raise SystemExit(2) from None
    print(json.dumps({"job": store.json_safe(job)}, default=str))


def add_commands(sub) -> None:
    from .compare import add_scenario_flags
    p = sub.add_parser("audit", help="measure outside checkpoints (original, retrain, unlearned) like a comparison",
                       description="Load your own original, retrained and unlearned models and run the comparison's "
                                   "evaluation on them; writes DIR/results.json (kind audit).")
    add_scenario_flags(p)
    add_model_flags(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-record", dest="record", action="store_false",
                   help="do not list the result as a done job in the run store (the dashboard)")
    p.set_defaults(func=cmd_audit)
