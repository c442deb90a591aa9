"""Embeddings (UMAP): forget vs retain samples, original vs unlearned on shared axes, per layer,
with an epoch scrubber. UMAP itself always runs on the worker (embed jobs), never in this process."""
import streamlit as st

from dashboard import data, facts, figures, logic, text, widgets

job, res, layers, s = widgets.results_page("Embeddings (UMAP)")
class_names = s.get("class_names")

try:
    arrs = data.arrays(job)
except Exception as err:
    st.error(f"Could not read the arrays of job {text.code(job['id'])}: {text.md(err)}")
    st.stop()
if not arrs or facts.EMBED_LABELS not in arrs or facts.EMBED_IS_FORGET not in arrs:
    st.info("This job stored no embedding sample (arrays.npz is missing or has no embed_labels); "
            "rerun it to get the UMAP views.")
    st.stop()
labels, is_forget = arrs[facts.EMBED_LABELS], arrs[facts.EMBED_IS_FORGET]

runs = [n for n in logic.run_names(res) if n != "original" and facts.umap_key(n) in arrs]
if not runs or facts.umap_key("original") not in arrs:
    st.info("No UMAP coordinates were stored for this job.")
    st.stop()

c1, c2 = st.columns([1, 1])
default = "ec" if "ec" in runs else runs[-1]
run = c1.selectbox("Unlearned model", runs, index=runs.index(default), format_func=widgets.fmt_run, key="em_run")
penult = layers[-1] if layers else "penultimate"
layer = c2.selectbox("Layer", layers or [penult], index=len(layers) - 1 if layers else 0, key="em_layer",
                     format_func=lambda l: f"{l} (penultimate, precomputed)" if l == penult else l)
st.caption(f"{int(is_forget.sum())} forget samples (×) and {int((~is_forget).sum())} retain samples, a stratified "
           f"subsample. UMAP is fitted on the original's features and the other models are projected into it, so "
           "the panels share their axes. Retrain, the model that never saw the forget set, is the picture to "
           "match: the unlearned model should look like it, not merely unlike the original.")


def beside_references(coords: dict, shown: tuple[str, object]) -> list[tuple[str, object]]:
    """The panels: the original, the model shown, and retrain (the target) unless it is the one shown."""
    retrain = [] if run == "retrain" else [("Retrain (the target)", coords.get(facts.umap_key("retrain")))]
    return [("Original", coords.get(facts.umap_key("original"))), shown, *retrain]


def show_pair(coords: dict, key: str, title: str | None = None) -> None:
    if coords.get(facts.umap_key("original")) is None or coords.get(facts.umap_key(run)) is None:
        st.info(f"This embedding has no coordinates for {text.md(figures.display_name(run))}.")
        return
    fig = figures.umap_panels(beside_references(coords, (widgets.fmt_run(run), coords[facts.umap_key(run)])),
                              labels, is_forget, class_names, title)
    widgets.show(fig, key=key, export=f"umap_{layer}_{run}")


@st.fragment(run_every=2.0)
def wait_for_embed(embed_id: str) -> None:
    ej = data.get_job(embed_id)
    if ej is None:
        return
    widgets.progress_block(ej)
    if ej["state"] not in logic.ACTIVE_STATES:
        data.invalidate_jobs()
        st.rerun(scope="app")


def request_embed(layer_name: str) -> None:
    try:
        ej = data.submit("embed", {"job": job["id"], "layer": layer_name})
        data.ensure_worker()
    except Exception as err:
        st.session_state["_embed_error"] = logic.error_text(err)
        return
    st.session_state["_embed_error"] = None
    st.toast(f"Queued embedding of {text.md(layer_name)} (job {ej['id']})")


if layer == penult:
    show_pair(arrs, "em_pen")
else:
    ej = data.embed_jobs(data.jobs(), job["id"]).get(layer)
    token = (ej["id"], data.jt(ej, "finished")) if ej and ej.get("state") == "done" else None
    try:
        emb = data.arrays(job, facts.embed_file(layer), token=token or "none")
    except Exception as err:
        emb = None
        st.error(f"Could not read the embedding of {text.md(layer)}: {text.md(err)}")
    if emb:
        show_pair(emb, f"em_{layer}")
    elif ej is not None and ej["state"] in logic.ACTIVE_STATES:
        st.info(f"The worker is computing the UMAP of {text.md(layer)} (job {text.code(ej['id'])}).", icon=":material/hourglass_top:")
        wait_for_embed(ej["id"])
    else:
        if ej is not None and ej["state"] == "failed":
            st.error(f"Embedding {text.md(layer)} failed (job {text.code(ej['id'])}): {text.md(ej.get('error') or 'no message')}")
        st.info(f"Only the penultimate layer is embedded up front. The UMAP of {text.md(layer)} is computed by the "
                "background worker from the stored features (about a few seconds on digits).")
        st.button("Compute on the worker", key=f"em_compute_{layer}", type="primary", on_click=request_embed,
                  args=(layer,), icon=":material/memory:")
        if st.session_state.get("_embed_error"):
            st.error(st.session_state["_embed_error"])

# Epoch scrubber: per-epoch penultimate embeddings of single runs.
epochs = facts.epochs_of(arrs, run)
st.subheader("Through unlearning")
if epochs:
    e = st.select_slider("Epoch", epochs, value=epochs[-1], key=f"em_epoch_{run}")
    fig = figures.umap_panels(beside_references(arrs, (f"{widgets.fmt_run(run)} · epoch {e}",
                                                       arrs[facts.epoch_umap_key(run, e)])),
                              labels, is_forget, class_names)
    widgets.show(fig, key="em_epochs", export=f"umap_epoch_{run}_{e}")
    st.caption(f"Penultimate layer after each of {len(epochs)} unlearning epochs (same axes as the original).")
else:
    st.caption("Per-epoch embeddings are stored for single runs (Launch and tune), not for comparisons.")

with st.expander("How to read (and misread) UMAP", expanded=False):
    st.markdown(
        "- UMAP keeps **neighbourhoods**, not distances: the gap between two clusters and a cluster's size or "
        "spread mean little.\n"
        "- A forget class that 'dissolves' into other clusters is suggestive, not proof; one that stays a tight "
        "island after unlearning is a strong hint that the layer still separates it.\n"
        "- The picture depends on UMAP's settings and the sample; compare with the CKA and probe numbers on the "
        "**Layers** page, which measure the same question without a 2-D projection.")
