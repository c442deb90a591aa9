"""The first start, stage by stage: a checklist of a comparison's stages with a rough time estimate,
from the job's events and its partial results; the progress bar's stage in words with its epoch.
Pure functions (no Streamlit)."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .facts import RETRAIN_NOISE_RUN as RETRAIN_NOISE, display_name
from .logic import NOISE, num

# (key, label, rough seconds for the digits default on a 2-core CPU, README "Measured figures")
STAGES = (
    ("data", "Load the data", 1.0),
    ("original", "Train the original model", 15.0),
    ("retrain", "Train the retrained model (the gold standard)", 13.0),
    ("aux", "Pretrain EC's auxiliary modules", 2.0),
    ("refs", "Evaluate the reference rows (original, retrain)", 3.0),
    ("method", "Unlearn and evaluate each method", 4.5),  # per method
    (NOISE, "Train a second original from another seed (the training-noise band)", 15.0),
    (RETRAIN_NOISE, "Train a second retrained model from another seed (the tolerance of every gap to retrain)", 13.0),
    ("embed", "Embed the penultimate features for the UMAP view", 20.0),
)
ESTIMATED_PRESETS = ("digits",)


def stage_of(event: Mapping) -> str | None:
    """The checklist stage of a stage event (evaluating original/retrain is the reference stage)."""
    if event.get("type") != "stage":
        return None
    st = event.get("stage")
    if st == "eval":
        return "refs" if event.get("name") in ("original", "retrain") else "method"
    return st if any(st == k for k, _, _ in STAGES) else None


def checklist(events: Sequence[Mapping], n_methods: int, partial: Mapping | None = None,
              state: str = "running", now: float | None = None, preset: str | None = "digits") -> dict:
    """{"items": [{"key", "label", "status": done|running|pending, "detail"}], "eta": seconds or None}.

    The stage announced last is running, every earlier one done (a cached base model announces
    itself and is done at once), later ones pending. The method stage counts the methods of the
    partial results. The estimate (digits only) is the pending stages' typical time plus what is
    left of the running one."""
    keys = [k for k, _, _ in STAGES]
    seen = [(stage_of(e), num(e.get("time"))) for e in events]
    seen = [(s, t) for s, t in seen if s is not None]
    current = max((keys.index(s) for s, _ in seen), default=-1) if state == "running" else -1
    started = next((t for s, t in seen if current >= 0 and s == keys[current]), None)
    done_methods = [n for n in ((partial or {}).get("runs") or {}) if n not in ("original", "retrain")]
    pending = list((partial or {}).get("pending") or [])
    n = max(1, int(n_methods or 1))
    items, eta = [], 0.0
    for i, (key, label, secs) in enumerate(STAGES):
        status = "done" if i < current else ("running" if i == current else "pending")
        detail = ""
        total = secs * (n if key == "method" else 1)
        if key == "method":
            detail = f"{len(done_methods)}/{n} done" + (f" ({', '.join(done_methods)})" if done_methods else "")
            if pending and status != "done":
                detail += f"; next: {pending[0]}"
            left = total - secs * len(done_methods)
        else:
            left = total
        if status == "running" and started is not None and now is not None and key != "method":
            left = max(0.0, total - (now - started))
        if status != "done":
            eta += max(0.0, left)
        items.append({"key": key, "label": label, "status": status, "detail": detail})
    return {"items": items, "eta": eta if preset in ESTIMATED_PRESETS and current >= 0 else None}


ICONS = {"done": ":material/check_circle:", "running": ":material/progress_activity:",
         "pending": ":material/radio_button_unchecked:"}


def checklist_markdown(check: Mapping) -> str:
    """The checklist as Markdown lines (material icons, the running stage in bold)."""
    lines = []
    for it in check["items"]:
        text = f"**{it['label']}**" if it["status"] == "running" else it["label"]
        if it["status"] == "pending":
            text = f":gray[{text}]"
        lines.append(f"{ICONS[it['status']]} {text}" + (f" — {it['detail']}" if it["detail"] else ""))
    eta = check.get("eta")
    if eta is not None:
        lines.append(f"About **{max(5, int(round(eta / 5.0)) * 5)} s** left (typical for digits on a 2-core CPU; "
                     "cached base models skip their stages).")
    return "  \n".join(lines)


# The job's stage as the worker writes it ("stage" or "stage: name", engine/jobs/context.py) in words:
# a raw "original_seed2" told a first-time user nothing, and its long training looked stuck.
STAGE_WORDS = {
    "data": "loading the data",
    "original": "training the original model",
    "retrain": "training the retrained model (the gold standard)",
    "aux": "pretraining EC's auxiliary modules",
    "method": "unlearning with",
    "calibrate": "calibrating the learning rate of",
    "eval": "evaluating",
    NOISE: "second original (another seed): the training-noise reference",
    RETRAIN_NOISE: "second retrain (another seed): the tolerance reference",
    "embed": "embedding the penultimate features",
    "done": "done",
}
_RUN_WORDS = {"original": "the original model", "retrain": "the retrained model", "relearn": "the relearning test"}


def stage_label(stage: str | None, kind: str | None = None) -> str:
    """'method: ft' -> 'unlearning with FT', 'original_seed2' -> 'second original (another seed): ...';
    a stage the engine does not write (a grid's "3 of 8 comparisons done") is returned as it is."""
    key, _, name = (stage or "").partition(": ")
    words = STAGE_WORDS.get(key)
    if words is None:
        return stage or ""
    if kind == "audit" and key in ("original", "method"):  # an audit loads its models, it trains none
        return f"loading {_RUN_WORDS.get(name or key) or display_name(name)}"
    if key in ("method", "calibrate", "eval") and name:
        return f"{words} {_RUN_WORDS.get(name) or display_name(name)}"
    if key in ("data", "embed") and name:
        return f"{words} ({name.upper() if key == 'embed' else name})"
    return words


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def message_news(message: str | None, shown: str) -> str:
    """The stage message if it says something the progress line does not already (`shown`: the stage
    in words and the epoch count): a training message ("training original_seed2: epoch 3/12") repeats
    the count, and "embedding (UMAP)" every word of "embedding the penultimate features (UMAP)"."""
    message = (message or "").strip()
    if not message or "epoch" in message.lower() or _words(message) <= _words(shown):
        return ""
    return message


def epoch_text(events: Sequence[Mapping]) -> str:
    """'epoch 3 of 12' from the newest event that counts epochs since the stage shown began; a
    finished model's count is not the next stage's. A base model announces its stage again after
    each epoch, so the stage began at the first of its latest run of announcements."""
    stages = [i for i, e in enumerate(events) if e.get("type") == "stage"]
    if not stages:
        return ""
    same = (events[stages[-1]].get("stage"), events[stages[-1]].get("name"))
    start = stages[-1]
    for i in reversed(stages):
        if (events[i].get("stage"), events[i].get("name")) != same:
            break
        start = i
    ev = next((e for e in reversed(events[start:]) if e.get("epoch") and e.get("epochs")), None)
    return f"epoch {ev['epoch']} of {ev['epochs']}" if ev else ""
