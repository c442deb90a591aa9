"""The Launch page's Audit section: queue an audit of checkpoints trained elsewhere (paths on the
server's disk and/or uploads with a size cap). The engine checks every file before queueing
(engine.audit.prepare_audit); this form only gathers the request and shows the engine's error."""
from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from dashboard import data, launch_spec, logic
from dashboard.facts import MAX_UPLOAD_MB, SUPERVISION_POINTS, ConfigError

FORMATS = ["safetensors", "pt", "pth", "tar", "bin", "ckpt"]


def run_name(filename: str) -> str:
    """A run name from an uploaded file name: 'SalUn model.pth.tar' -> 'SalUn_model'."""
    stem = Path(filename).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_+-]", "_", stem).strip("_")[:40] or "unlearned"


def audit_spec(preset: str, arch: str | None, forget: str, original: str, retrain: str, unlearned_lines: str,
               indices: str = "", share: float = 0.0, uploads: dict | None = None) -> dict:
    """The audit job spec from the form's values; uploads = {"original"|"retrain": path, "unlearned": {name: path}}
    (already stored on the server) take the place of empty path fields."""
    uploads = uploads or {}
    overrides: dict = {}
    if arch:
        overrides["model"] = {"arch": arch}
    if indices.strip():
        overrides["forget"] = {"random": share or None}
    elif forget.strip():
        try:
            overrides["forget"] = {"classes": [int(c) for c in forget.split(",") if c.strip()]}
        except ValueError:
            raise ConfigError("forget.classes", f"give class ids separated by commas, e.g. 3,5 (got {forget!r})") from None
    unlearned = [ln.strip() for ln in unlearned_lines.splitlines() if ln.strip()]
    unlearned += [f"{n}={p}" for n, p in (uploads.get("unlearned") or {}).items()]
    spec = {"preset": preset, "overrides": overrides, "original": original.strip() or uploads.get("original") or "",
            "unlearned": unlearned}
    if retrain.strip() or uploads.get("retrain"):
        spec["retrain"] = retrain.strip() or uploads["retrain"]
    if indices.strip():
        spec["forget_indices"] = indices.strip()
    return spec


def _store_uploads(orig, retr, unl, stored: list) -> dict:
    """Store the uploads on the server (each path is added to `stored` as soon as it is written)."""
    def save(name: str, content: bytes) -> str:
        stored.append(data.api().save_upload(name, content))
        return stored[-1]

    out: dict = {"unlearned": {run_name(f.name): save(f.name, f.getvalue()) for f in unl or []}}
    if orig is not None:
        out["original"] = save(orig.name, orig.getvalue())
    if retr is not None:
        out["retrain"] = save(retr.name, retr.getvalue())
    return out


def section(preset: str) -> None:
    """The form; its preset follows `preset` (the Launch form's, the scenario on screen) until the user
    picks another here: a fixed first choice (digits) under a teach Launch form read as a mismatch."""
    ss = st.session_state
    if ss.get("a_preset") in (None, ss.get("_a_preset_followed")):
        ss["a_preset"] = ss["_a_preset_followed"] = preset
    st.divider()
    st.subheader("Audit")
    st.caption("Did *your* model forget? Measure an original, optionally a retrained oracle, and unlearned models "
               "trained elsewhere (SalUn, OpenUnlearning, the EC authors' checkpoints ...) with the comparison's own "
               "evaluation. Formats: .safetensors, or .pt / .pth / .pth.tar read with torch.load(weights_only=True) "
               "(never a full unpickle); wrappers {'state_dict'} / {'model'} and 'module.' / 'model.' prefixes are "
               "accepted. Keys must match the architecture exactly.")
    with st.form("audit_form"):
        c1, c2, c3 = st.columns(3)
        preset = c1.selectbox("Data set / preset", launch_spec.PRESET_CHOICES, key="a_preset")
        arch = c2.selectbox("Architecture", ["(preset default)", *SUPERVISION_POINTS], key="a_arch")
        forget = c3.text_input("Forget classes", "3", key="a_forget", help="class-wise forgetting, e.g. 3 or 3,5")
        c1, c2 = st.columns([2, 1])
        indices = c1.text_input("Forget index file (optional, sample-wise)", key="a_indices",
                                help=".npy or one training-sample index per line; replaces the forget classes")
        # no min / max: an out-of-range entry would stay red on screen while the last valid value is sent
        share = c2.number_input("Share it holds", value=0.0, step=0.01, key="a_share",
                                help="the share of training samples the index file lists (labels the run)")
        st.markdown("**Paths on the server's disk**")
        original = st.text_input("Original model", key="a_original", placeholder="/models/original.pth.tar")
        retrain = st.text_input("Retrained model (optional: the gold standard)", key="a_retrain")
        unlearned = st.text_area("Unlearned models, one NAME=PATH per line", key="a_unlearned",
                                 placeholder="salun=/models/salun.pth\nec=/models/ec.pth.tar")
        st.markdown(f"**…or upload them** (at most {MAX_UPLOAD_MB} MB each; an upload fills an empty path field)")
        c1, c2, c3 = st.columns(3)
        up_orig = c1.file_uploader("Original", type=FORMATS, key="a_up_original", max_upload_size=MAX_UPLOAD_MB)
        up_retr = c2.file_uploader("Retrained", type=FORMATS, key="a_up_retrain", max_upload_size=MAX_UPLOAD_MB)
        up_unl = c3.file_uploader("Unlearned (named after the file)", type=FORMATS, accept_multiple_files=True,
                                  key="a_up_unlearned", max_upload_size=MAX_UPLOAD_MB)
        go = st.form_submit_button("Queue audit", icon=":material/fact_check:", key="a_submit")
    if not go:
        return
    stored: list[str] = []
    try:
        spec = audit_spec(preset, None if arch.startswith("(") else arch, forget, original, retrain, unlearned,
                          indices, share, _store_uploads(up_orig, up_retr, up_unl, stored))
        job = data.api().submit_isolated(spec)  # the checkpoints are read in a memory-capped child process
    except (ConfigError, ValueError, RuntimeError) as err:
        data.api().discard_uploads(stored)  # a refused upload is not kept (one a queued audit uses is)
        st.error(f"Not queued: {logic.error_text(err)}", icon=":material/error:")
        return
    data.invalidate_jobs()
    st.success(f"Audit queued as job `{job['id']}`.")
    st.query_params["job"] = job["id"]
