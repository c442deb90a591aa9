"""Layers (CKA): methods x layers heatmap, the layer x layer matrix of one run, probe recovery."""
import pandas as pd
import streamlit as st

from dashboard import delta_figures, figures, logic, text, verdict, widgets

job, res, layers, s = widgets.results_page("Layers (CKA)")
st.caption("CKA (centred kernel alignment) compares the features two models compute for the same samples: "
           "1 = the same up to rotation and scale, 0 = unrelated. After real forgetting, the forget samples' features "
           "should look like the retrained model's, not the original's.")

splits = logic.available_splits(res)
if not splits or not layers:
    st.warning("This job stored no per-layer CKA.")
    st.stop()

VIEWS = {"delta": "Difference to retrain (0 = retrain)", "zoom": "CKA, zoomed scale", "fixed": "CKA, fixed 0-1 scale"}
c1, c2, c3 = st.columns([1, 1, 1])
split = c1.selectbox("Samples (split)", splits, format_func=lambda k: logic.SPLIT_LABELS.get(k, k), key="ly_split",
                     persist_state="session")
no_retrain = logic.lacks_retrain(res)  # an audit may have no retrained model
refs = ["original"] if no_retrain else ["original", "retrain"]
if st.session_state.get("ly_ref") not in (None, *refs):
    st.session_state["ly_ref"] = "original"
views = [v for v in VIEWS if not (no_retrain and v == "delta")]
if st.session_state.get("ly_view") not in (None, *views):
    st.session_state["ly_view"] = views[0]
view = c2.radio("Scale", views, format_func=VIEWS.get, key="ly_view", persist_state="session",
                help="Difference to retrain: each cell is the run's CKA to the original minus the retrained model's, "
                     "on a diverging scale centred at 0. Closer to 0 is better; below 0 the run was pushed further "
                     "from the original than retrain is (distorted, not forgotten).")
reference = c3.radio("Reference model", refs, horizontal=True, key="ly_ref",
                     format_func=lambda r: "Original (before unlearning)" if r == "original" else "Retrained (the target)",
                     persist_state="session", disabled=view == "delta",
                     help="For the CKA scales: the model each run is compared with.")
band = logic.seed_band(res, split)  # training noise, when the comparison measured it
noise = [logic.NOISE] if band else []
if view == "delta":
    names = logic.run_names(res)
    per = logic.per_layer(res, "cka_vs_original", split, names)
    if band:
        per[logic.NOISE] = band
    deltas = verdict.to_retrain(per, layers)
    names = names + noise
    title = f"CKA to the original minus retrain's · {logic.SPLIT_LABELS.get(split, split)}"
    widgets.show(delta_figures.delta_heatmap(deltas, layers, names, title), key="ly_heat",
                 export=f"cka_{split}_minus_retrain")
    st.caption("Read across a row: 0 (white) means the layer is as far from the original as in the retrained model, "
               "the goal. Orange (above 0): the run still holds more of the original than retrain does, superficial "
               "forgetting when it stays orange in the inner layers. Purple (below 0): pushed past retrain, "
               "distortion rather than forgetting.")
else:
    field = "cka_vs_original" if reference == "original" else "cka_vs_retrain"
    names = [n for n in logic.run_names(res) if n != reference]
    cka = logic.per_layer(res, field, split, names)
    if band and reference == "original":
        cka[logic.NOISE] = band
        names = names + noise
    title = (f"CKA to the {'original' if reference == 'original' else 'retrained model'} · "
             f"{logic.SPLIT_LABELS.get(split, split)}")
    widgets.show(figures.cka_heatmap(cka, layers, names, title, zoom=view == "zoom"), key="ly_heat",
                 export=f"cka_{split}_vs_{reference}")
    if reference == "original":
        st.caption("Read across a row and compare it with the Retrain row: real forgetting moves each layer as far as "
                   "retrain moved it, no further. A row brighter than Retrain in the inner layers is superficial "
                   "forgetting; a row darker than Retrain is distorted.")
    else:
        st.caption("Against the retrained model, higher is better: the run's features look like those of a model that "
                   "never saw the forget set.")
noise_line = logic.seed_band_text(res, layers, split)
if noise_line:
    st.caption(text.md(noise_line))

if not no_retrain:
    st.subheader("Distance to retrain, layer by layer")
    rows = verdict.rows_vs_retrain(res)
    # every row in view: with the default height (ten rows) EC's row could sit below the fold of an inner scroll
    distance_table = pd.DataFrame([{"Run": widgets.fmt_run(r["name"]), **widgets.headline_cells(r),
                                    "Verdict": r["verdict"]} for r in rows])
    # the text columns sized to their longest value: stretched evenly, the Verdict was cut at 1400 px
    st.dataframe(distance_table, hide_index=True, width="stretch", height="content", key="ly_distance",
                 column_config={**widgets.headline_columns(), **widgets.fitted(distance_table, "Run", "Verdict")})
    forget_cka = logic.per_layer(res, "cka_vs_original", "forget")
    forget_band = logic.seed_band(res)
    if forget_band:
        forget_cka[logic.NOISE] = forget_band
    gaps = verdict.to_retrain(forget_cka, layers)
    picks = [n for n in gaps if n != "retrain"]
    baseline = logic.teaching_baseline(res)
    default = [n for n in picks if n in ("ec", baseline, logic.NOISE)]
    shown = st.multiselect("Runs", picks, default=default, format_func=widgets.fmt_run, key="ly_gap_runs")
    tols, _ = logic.tolerances(res)
    widgets.show(delta_figures.delta_lines({n: gaps[n] for n in shown}, layers,
                                           "Forget CKA to the original minus retrain's, per layer", "gap to retrain",
                                           percent=False, band=tols),
                 key="ly_gaps", export="forget_cka_gaps_to_retrain")
    st.caption("The distance to retrain is the largest gap over the inner layers (all but the last). The grey band "
               "around Retrain (0): " + text.md(logic.tolerance_text(res))
               + (" The “Original, other seed” line is training noise: a second original trained from another seed, "
                  "read against retrain like every run." if forget_band else ""))

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
    centred = st.toggle("Relative to retrain", value=True, key="ly_probe_delta",
                        help="Probe recovery minus the retrained model's at each layer (retrain = the dashed line "
                             "at 0). Off: the raw probe accuracy with the chance level.")
    if centred:
        deltas = verdict.to_retrain(probe, layers)
        probe_tols, _ = logic.tolerances(res, "probe")
        widgets.show(delta_figures.delta_lines({n: deltas[n] for n in shown if n in deltas}, layers,
                                               "Linear-probe recovery minus retrain's", "probe accuracy − retrain",
                                               band=None if no_retrain else probe_tols),
                     key="ly_probe", export="probe_recovery_minus_retrain")
    else:
        n_classes = s.get("num_classes")
        chance = 1.0 / n_classes if n_classes else None
        widgets.show(figures.probe_lines({n: probe[n] for n in shown}, layers, chance=chance), key="ly_probe",
                     export="probe_recovery")
    st.caption("A linear probe trained on each layer's features tries to recover the forget classes' labels on test "
               "samples. The retrained model is the reference: above it is information unlearning left behind, "
               "below it is damage beyond what forgetting needs. The grey band around it (relative view) is the probe's "
               "tolerance: how far a second retrained model from another seed lands (assumed 0.05 where none was "
               "measured).")
else:
    st.caption("No probe results stored for this job.")
