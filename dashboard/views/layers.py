"""Layers (CKA): methods x layers heatmap, the layer x layer matrix of one run, probe recovery."""
import streamlit as st

from dashboard import figures, logic, widgets

st.title("Layers (CKA)")
ctx = widgets.require_results()
if ctx is None:
    st.stop()
job, res = ctx
layers = list(res.get("layers") or [])
s = res.get("scenario") or {}
st.caption("CKA (centred kernel alignment) compares the features two models compute for the same samples: "
           "1 = the same up to rotation and scale, 0 = unrelated. After real forgetting, the forget samples' features "
           "should look like the retrained model's, not the original's.")

splits = logic.available_splits(res)
if not splits or not layers:
    st.warning("This job stored no per-layer CKA.")
    st.stop()

c1, c2 = st.columns(2)
split = c1.selectbox("Samples (split)", splits, format_func=lambda k: logic.SPLIT_LABELS.get(k, k), key="ly_split",
                     persist_state="session")
refs = ["original"] if logic.lacks_retrain(res) else ["original", "retrain"]  # an audit may have no retrain
if st.session_state.get("ly_ref") not in (None, *refs):
    st.session_state["ly_ref"] = "original"
reference = c2.radio("Reference model", refs, horizontal=True, key="ly_ref",
                     format_func=lambda r: "Original (before unlearning)" if r == "original" else "Retrained (the target)",
                     persist_state="session")
field = "cka_vs_original" if reference == "original" else "cka_vs_retrain"
names = [n for n in logic.run_names(res) if n != reference]
cka = logic.per_layer(res, field, split, names)
title = (f"CKA to the {'original' if reference == 'original' else 'retrained model'} · "
         f"{logic.SPLIT_LABELS.get(split, split)}")
widgets.show(figures.cka_heatmap(cka, layers, names, title), key="ly_heat", export=f"cka_{split}_vs_{reference}")
if reference == "original":
    st.caption("Read across a row: a superficially forgotten model stays bright (≈ original) in the early and middle "
               "layers and darkens only near the output. The Retrain row is how far real forgetting moves each layer.")
else:
    st.caption("Against the retrained model, higher is better: the run's features look like those of a model that "
               "never saw the forget set.")

st.subheader("Layer × layer")
runs = [n for n in logic.run_names(res) if n != "original" and (res["runs"].get(n) or {}).get("cka_matrix_vs_original")]
if runs:
    default = "ec" if "ec" in runs else runs[0]
    run = st.selectbox("Run", runs, index=runs.index(default), format_func=widgets.fmt_run, key="ly_run")
    matrix = res["runs"][run]["cka_matrix_vs_original"]
    widgets.show(figures.cka_matrix_heatmap(matrix, layers, run), key="ly_matrix", export=f"cka_matrix_{run}")
    st.caption("Each cell compares one of this run's layers (row) with one of the original's (column), on the forget "
               "set. A bright diagonal means each layer still computes what it computed before unlearning.")
else:
    st.caption("No layer × layer matrix stored for this job.")

st.subheader("Probe recovery")
probe = logic.per_layer(res, "probe_forget_acc")
probe = {n: v for n, v in probe.items() if v}
if probe:
    all_names = list(probe)
    default = [n for n in all_names if n in ("original", "retrain", "ec")] + \
              [n for n in all_names if n not in ("original", "retrain", "ec")][:3]
    shown = st.multiselect("Runs", all_names, default=default, format_func=widgets.fmt_run, key="ly_probe_runs")
    n_classes = s.get("num_classes")
    chance = 1.0 / n_classes if n_classes else None
    widgets.show(figures.probe_lines({n: probe[n] for n in shown}, layers, chance=chance), key="ly_probe",
                 export="probe_recovery")
    st.caption("A linear probe trained on each layer's features tries to recover the forget classes' labels on test "
               "samples. The retrained model is the floor: anything above it is information unlearning left behind.")
else:
    st.caption("No probe results stored for this job.")
