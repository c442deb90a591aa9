"""Load models that EC Lab did not train: safetensors and PyTorch checkpoints, safely and strictly.

Formats: `.safetensors`, and `.pt` / `.pth` / `.pth.tar` (also `.bin`, `.ckpt`) read with
`torch.load(weights_only=True)` only, so a file can hold tensors and plain containers but never
run code. The usual wrappers are unwrapped ({"state_dict": ...}, {"model": ...},
{"model_state_dict": ...}) and a "module." (DDP) or "model." prefix shared by every key is
stripped. Keys and shapes must then match the architecture exactly; on a mismatch the error lists
the first missing and unexpected keys, names the architecture tried and, where another one fits,
says which. The class count is read from the checkpoint's head and checked against the data set.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from .catalog import ALL_DATASETS
from .config import SUPERVISION_POINTS, RunConfig

MAX_CHECKPOINT_MB = int(os.environ.get("ECLAB_MAX_CHECKPOINT_MB", "2048"))  # a ResNet-50 is ~100 MB
TORCH_SUFFIXES = (".pt", ".pth", ".pth.tar", ".tar", ".bin", ".ckpt")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
PREFIXES = ("module.", "model.")
HEADS = {"vit_tiny": "head"}  # the classifier module of each architecture (default "fc")
SHOWN = 5  # keys listed per kind of mismatch
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
COUNTER_BUFFERS = ("num_batches_tracked",)  # the only integer tensors of the architectures' state dicts
COUNTER_DTYPES = (torch.int64, torch.int32)



class CheckpointFormatError(ValueError):
    """An outside checkpoint is missing, unreadable, unsafe, or does not fit the architecture."""


def check_path(path, role: str = "checkpoint", max_mb: int | None = None) -> Path:
    """The checkpoint file, resolved: it exists, is a regular file, is not empty and is below the cap."""
    max_mb = MAX_CHECKPOINT_MB if max_mb is None else max_mb
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise CheckpointFormatError(f"{role}: no file given: pass the path of a .safetensors, .pt, .pth or .pth.tar file")
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointFormatError(f"{role}: {p} does not exist: check the path (it is read on this machine)")
    if not p.is_file():
        raise CheckpointFormatError(f"{role}: {p} is not a file: pass the checkpoint file itself, not a folder")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointFormatError(f"{role}: {p} is empty: re-save the model")
    expanded = max(size, expanded_size(p))
    if expanded > max_mb * 2**20:
        what = f"is {size / 2**20:.0f} MB" if expanded == size else \
            f"is {size / 2**20:.1f} MB but expands to {expanded / 2**20:.0f} MB when read"
        raise CheckpointFormatError(f"{role}: {p} {what}, over the {max_mb} MB limit: save only "
                                    f"the model's state dict (no optimizer), or raise ECLAB_MAX_CHECKPOINT_MB")
    return p.resolve()


def expanded_size(p: Path) -> int:
    """The bytes a file declares it holds once read, from its header alone (nothing is decompressed):
    the entries' sizes of a zip (torch.save's format; a re-zipped one may be compressed), the data
    offsets of a safetensors header. 0 for other files (read as they are: their size is what counts)."""
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as z:
                return sum(info.file_size for info in z.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return 0  # unreadable: torch.load reports it
    if p.name.lower().endswith(".safetensors"):
        with open(p, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n > p.stat().st_size:
                return n  # a header longer than the file: never allocated, refused here
            try:
                header = json.loads(fh.read(n))
                return 8 + n + max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                                   default=0)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                return 0  # not a safetensors header: load_file reports it
    return 0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_file(path: Path, role: str = "checkpoint"):
    """The raw object in the file: a safetensors dict, or what torch.load(weights_only=True) returns."""
    name = path.name.lower()
    if name.endswith(".safetensors"):
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointFormatError(f"{role}: {path} is not a readable safetensors file ({_short(err)}): "
                                        f"re-save it with safetensors.torch.save_file") from None
    if not name.endswith(TORCH_SUFFIXES):
        raise CheckpointFormatError(f"{role}: {path} has an unknown extension: use .safetensors, .pt, .pth or .pth.tar")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError ...
        text = str(err)
        if "Weights only load failed" in text or "Unsupported global" in text:
            found = re.search(r"Unsupported (?:global: GLOBAL \S+|operand \d+)", text)  # torch's own wording
            raise CheckpointFormatError(
                f"{role}: {path} holds Python objects besides tensors, which EC Lab refuses to unpickle (it could "
                f"run code; {found.group(0) if found else 'not a weights-only file'}). Fix: in an environment you "
                f"trust, re-save only the weights, e.g. torch.save(ckpt['state_dict'], 'model.pt') or "
                f"safetensors.torch.save_file(...)") from None
        raise CheckpointFormatError(f"{role}: {path} is not a PyTorch checkpoint ({_short(err)}): pass a file "
                                    f"written by torch.save or safetensors") from None


def _short(err: BaseException, limit: int = 240) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def unwrap(obj, role: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside the usual wrappers, with a shared "module." / "model." prefix removed."""
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        if isinstance(obj, dict) and not _is_state(obj):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointFormatError(f"{role}: the file holds a {type(obj).__name__}, not a state dict: save "
                                    f"model.state_dict() (optionally under 'state_dict' or 'model')")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointFormatError(
            f"{role}: not a state dict: entries {', '.join(map(repr, bad[:SHOWN]))} are not tensors (looked inside "
            f"{', '.join(WRAPPER_KEYS)}): save model.state_dict(), optionally under 'state_dict' or 'model'")
    state = dict(obj)
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if all(isinstance(k, str) and k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def check_tensors(state: dict, path: Path, role: str = "checkpoint") -> dict:
    """The state dict, if its keys are names and its tensors finite numbers of a floating type (an integer
    only in a counter buffer such as BatchNorm's num_batches_tracked): torch would otherwise drop the
    imaginary part of complex weights or truncate float ones into integers silently, and NaN or inf
    weights would fail the job late in the worker."""
    odd = [k for k in state if not isinstance(k, str)]
    if odd:
        raise CheckpointFormatError(f"{role}: {path} has keys that are not names ({', '.join(map(repr, odd[:SHOWN]))}): "
                                    f"a state dict maps parameter names to tensors: save model.state_dict()")
    for k, v in state.items():
        if v.dtype not in FLOAT_DTYPES and not (k.endswith(COUNTER_BUFFERS) and v.dtype in COUNTER_DTYPES):
            raise CheckpointFormatError(f"{role}: {path}: tensor {k} is {str(v.dtype).replace('torch.', '')}, not "
                                        f"a floating type (float16, bfloat16, float32, float64): re-save the model's "
                                        f"own weights (model.float().state_dict())")
        if v.dtype in FLOAT_DTYPES and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise CheckpointFormatError(f"{role}: {path}: tensor {k} holds {bad} NaN or infinite value(s) of "
                                        f"{v.numel()}: the model diverged before it was saved; audit a checkpoint "
                                        f"from before that")
    return state


def _is_state(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def head_classes(state: dict, arch: str) -> int | None:
    w = state.get(f"{HEADS.get(arch, 'fc')}.weight")
    return int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() == 2 else None


def input_shape(cfg: RunConfig) -> tuple[int | None, int, int]:
    """(number of classes or None when unknown without reading the data, in_channels, image size)."""
    d = cfg.data
    info = ALL_DATASETS[d.dataset]  # the family's registration (engine/data/sets); an image folder is RGB
    return info.num_classes, info.channels, d.image_size or info.size


def _diff(model: nn.Module, state: dict) -> tuple[list[str], list[str], list[str]]:
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} in the file, {list(v.shape)} in the model"
              for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return missing, unexpected, shapes


def _fitting_arch(state: dict, num_classes: int, in_channels: int, image_size: int, tried: str, width: int) -> str | None:
    from .models import create_model
    for arch in SUPERVISION_POINTS:
        if arch == tried:
            continue
        try:
            m = create_model(arch, num_classes, in_channels, image_size, width)
        except Exception:  # noqa: BLE001 - an architecture that cannot take this input size
            continue
        if not any(_diff(m, state)):
            return arch
    return None


def _listing(label: str, keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return f"{label} ({len(keys)}): {', '.join(keys[:SHOWN])}{more}"


def build(state: dict, arch: str, num_classes: int, in_channels: int, image_size: int,
          role: str = "checkpoint", seed: int = 0, width: int = 32) -> nn.Module:
    """The architecture with the checkpoint's weights, strictly (every key and shape must match)."""
    from .models import create_model
    head = head_classes(state, arch)
    if head is not None and head != num_classes:
        raise CheckpointFormatError(
            f"{role}: the checkpoint's head ({HEADS.get(arch, 'fc')}.weight) has {head} classes but the data set has "
            f"{num_classes}: audit it on the data set it was trained on (--preset / --set data.dataset=...)")
    torch.manual_seed(seed)
    model = create_model(arch, num_classes, in_channels, image_size, width)
    missing, unexpected, shapes = _diff(model, state)
    if missing or unexpected or shapes:
        parts = [_listing(n, k) for n, k in (("missing keys", missing), ("unexpected keys", unexpected),
                                             ("shape mismatches", shapes)) if k]
        fit = _fitting_arch(state, num_classes, in_channels, image_size, arch, width)
        fix = f"this checkpoint fits --arch {fit}" if fit else \
            f"pick the architecture it was saved from with --arch ({', '.join(SUPERVISION_POINTS)})"
        raise CheckpointFormatError(f"{role}: the checkpoint does not match architecture {arch}: "
                                    f"{'; '.join(parts)}. Fix: {fix}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_model(path, cfg: RunConfig, role: str, num_classes: int | None = None, in_channels: int | None = None,
               image_size: int | None = None) -> nn.Module:
    """Check the path, read it safely, unwrap it and load it into cfg.model.arch. Shapes default to
    what the configured data set implies (the caller passes the loaded data's when it has them)."""
    n, c, s = input_shape(cfg)
    num_classes, in_channels, image_size = num_classes or n, in_channels or c, image_size or s
    p = check_path(path, role)
    state = check_tensors(unwrap(read_file(p, role), role), p, role)
    if num_classes is None:  # imagefolder before the data is read: trust the head, checked again at run time
        num_classes = head_classes(state, cfg.model.arch)
        if num_classes is None:
            raise CheckpointFormatError(f"{role}: found no classifier head ({HEADS.get(cfg.model.arch, 'fc')}.weight) "
                                        f"for architecture {cfg.model.arch}: check --arch")
    return build(state, cfg.model.arch, num_classes, in_channels, image_size, role, cfg.seed, cfg.model.width)
