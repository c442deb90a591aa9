"""Teach: a guided walk through superficial forgetting on a comparison: the one picked in the sidebar,
else the newest of the teach preset, else the newest. Every number comes from the results shown; nothing is hard-coded."""
import streamlit as st

from dashboard import calibration, data, delta_figures, facts, figures, logic, text, verdict, widgets

TEACH_PRESET = "teach"
TEACH_NOTE = ("This scenario is synthetic: each class is a small oriented texture motif (a Gabor-like patch with a "
              "class-specific orientation and wavelength) placed at random positions on backgrounds shared by all "
              "classes with distractor shapes, so a network must build dedicated inner-layer detectors for each "
              "class. A model that never saw the forget class has no such detector; a model that only learned to "
              "hide it at the output still has it. The images are generated from the run's seed "
              "(engine/data/synthetic.py; README: the teach scenario).")


def _preset(j: dict) -> str | None:
    """The scenario preset of a finished job (from its results; None when unreadable)."""
    try:
        res = data.results(j)
    except Exception:
        return None
    return ((res or {}).get("scenario") or {}).get("preset")


def walk_job(done: list[dict]) -> tuple[dict | None, str]:
    """The comparison to walk through and why: the one picked in the sidebar ("Results shown") when
    the user picked a comparison; else the newest comparison of the teach preset, else the newest."""
    compares = [j for j in done if j.get("kind") == "compare"]
    picked = st.session_state.get(widgets.RESULTS_KEY)
    if not st.session_state.get(widgets.AUTO_KEY, True) and picked:
        pj = next((j for j in done if j["id"] == picked), None)
        if pj is not None and pj.get("kind") == "compare":
            return pj, "the comparison picked in the sidebar"
        if pj is not None:
            st.info("The sidebar shows a single run; the guided walk needs a comparison of several methods, so it "
                    "uses a comparison instead.", icon=":material/info:")
    teach = next((j for j in compares if _preset(j) == TEACH_PRESET), None)
    if teach is not None:
        return teach, "the newest comparison of the teach preset"
    return (compares[0], "the newest comparison") if compares else (None, "")


st.title("Teach: forgotten at the logits, kept in the layers")
all_jobs = data.jobs()
done = data.done_result_jobs(all_jobs)
job, why = walk_job(done)
if job is None:
    if done:
        st.info("The guided walk needs a comparison of several methods; only single runs are finished so far.")
        if st.button("Queue the default comparisons", key="teach_queue", type="primary"):
            widgets.queue_default_compare()
    else:
        widgets.empty_state(all_jobs)
    st.stop()
try:
    res = data.results(job)
except Exception as err:
    widgets.damaged_card(job["id"], err)
    st.stop()
if not res:
    st.error(f"Job `{job['id']}` has no results.")
    st.stop()

layers = list(res.get("layers") or [])
inner = logic.inner_layers(layers)
rows = {r["name"]: r for r in logic.headline_rows(res)}
judged = {r["name"]: r for r in verdict.rows_vs_retrain(res)}  # the same rows, read against retrain
orig, retr = rows.get("original"), rows.get("retrain")
base = logic.teaching_baseline(res)
sc = res.get("scenario") or {}
classes = logic.forget_classes(res)
st.markdown(f"This walk goes through **{why}** (job {text.code(job['id'])}): preset **{text.md(sc.get('preset', '?'))}**, "
            "forget " + (f"class{'es' if len(classes) > 1 else ''} **{text.md(', '.join(map(str, classes)))}**" if classes
                         else f"**{text.md(logic.forget_label(sc))}**")
            + f", seed **{text.md(sc.get('seed', '?'))}** ({text.md(logic.scenario_line(res))}). Pick another "
            "comparison under “Results shown” in the sidebar.")
if sc.get("preset") == TEACH_PRESET:
    st.info(TEACH_NOTE, icon=":material/texture:")
    images, names = data.teach_samples(seed=int(sc.get("seed") or 0))
    c1, c2 = st.columns([2, 3])
    with c1:
        widgets.show(figures.sample_grid(images, sc.get("class_names") or names, classes), key="teach_samples")
    c2.caption("Six examples per class, drawn by the same generator as the run's data (not the exact training "
               "images). Each class is one motif orientation and wavelength; the row framed in red is the class "
               "to forget. The backgrounds, blobs and bars are shared by every class.")
widgets.calibration_note(list(judged.values()))
if base is None or retr is None or orig is None:
    st.warning("This comparison lacks a baseline or a reference row, so the walk cannot be shown.")
    st.stop()
B, b = figures.display_name(base), rows[base]
Bm = text.md(B)  # run names come from the results file: plain text in markdown
cka_o = logic.per_layer(res, "cka_vs_original", "forget")
probe = logic.per_layer(res, "probe_forget_acc")
s = res.get("scenario") or {}
what = text.md(logic.forget_phrase(s))
inner_md = text.md(", ".join(inner))


def step(n: int, title: str) -> None:
    st.html(f'<div class="eclab-step"><b>Step {n}.</b> {text.html(title)}</div>')


# Step 1
step(1, f"{B} looks forgotten at the logits")
c = st.columns(4)
c[0].metric(f"{Bm}: forget accuracy", logic.pct(b["forget_acc"]),
            delta=f"{100 * (b['forget_acc'] - orig['forget_acc']):+.1f} pts vs original" if b["forget_acc"] is not None
            and orig["forget_acc"] is not None else None, delta_color="off")
c[1].metric("Retrain: forget accuracy", logic.pct(retr["forget_acc"]))
c[2].metric(f"{Bm}: retain accuracy", logic.pct(b["retain_acc"]))
c[3].metric(f"{Bm}: MIA efficacy", logic.pct(b["mia"]))
st.markdown(f"After unlearning {what}, {Bm} gets **{logic.pct(b['forget_acc'])}** of the forget samples right "
            f"(original: {logic.pct(orig['forget_acc'])}, retrained model: {logic.pct(retr['forget_acc'])}) "
            f"and keeps **{logic.pct(b['retain_acc'])}** on the retain set. "
            + ("By the usual numbers it has forgotten." if facts.forgets(b["forget_acc"], retr["forget_acc"])
               else "No baseline here matches retrain's forget accuracy closely; this one comes nearest."))
st.caption(f"Chosen as the baseline whose forget accuracy is closest to retrain's and whose worst inner layer "
           f"keeps most of the original (the largest gap to retrain in forget CKA over {inner_md}).")
if calibration.not_forgotten(res["runs"][base]):
    st.warning(f"{Bm} {calibration.NOT_REACHED}: {text.md(calibration.missed(res['runs'][base]))} (every baseline "
               "here is in that case). Read this walk with that in mind.", icon=":material/warning:")

# Step 2
step(2, "…but its layers still hold the class")
# one layer for both readings: the baseline's worst inner layer, where the headline reads it
lay = b.get("worst_layer")
cg = next((g for g in b.get("gaps") or [] if g["point"] == lay), None)
pg = next((g for g in b.get("probe_gaps") or [] if g["point"] == lay), None)
probe_line = "" if pg is None or pg["gap"] is None else (
    f" A linear probe on the same layer still recovers **{logic.pct(pg['value'])}** of forget-class test samples; "
    f"the retrained model's probe: {logic.pct(pg['retrain'])} (gap **{100 * pg['gap']:+.1f} pts**, tolerance "
    f"±{100 * pg['tol']:.1f} pts: " + ("within it, like retrain)." if pg["within"] else "beyond it)."))
if cg is not None and cg["gap"] is not None:
    st.markdown(f"At **{text.md(lay)}**, its worst inner layer, {Bm}'s features on the forget samples have CKA "
                f"**{logic.dec(cg['value'])}** to the original's; the retrained model's: {logic.dec(cg['retrain'])} "
                f"(gap **{cg['gap']:+.3f}**, tolerance ±{cg['tol']:.3f})." + probe_line)
show = {n: cka_o.get(n) for n in ("original", base, "retrain") if cka_o.get(n)}
band = logic.seed_band(res)
if band:
    show[logic.NOISE] = band  # training noise: what reseeding the original alone does
tols, _ = logic.tolerances(res)
c1, c2 = st.columns(2)
with c1:
    widgets.show(figures.layer_lines(show, layers, "Forget-set CKA to the original", "CKA", percent=False, band=tols),
                 key="teach_cka")
with c2:
    widgets.show(figures.probe_lines({n: probe.get(n) for n in ("original", base, "retrain") if probe.get(n)},
                                     layers, chance=1.0 / s["num_classes"] if s.get("num_classes") else None),
                 key="teach_probe")
st.caption("The grey band around Retrain's line: " + text.md(logic.tolerance_text(res)) + " "
           + ("The dash-dotted grey “Original, other seed” line is training noise: a second original trained on the "
              "same data from another seed. Its CKA to the original is what reseeding alone does; a method's line "
              "near it has changed no more than a new seed would." if band else
              "This comparison trained no second original, so no training-noise line is drawn."))
last = layers[-1] if layers else None
b_gap = text.md(logic.distance_text(b))
if "superficial" in judged[base]["flags"]:
    last_gap = b["last_gap"]
    st.markdown(f"Distance to retrain: {Bm} **{b_gap}**, where its forget CKA to the original is "
                f"{b['worst_gap']:+.3f} above the retrained model's (per layer: {text.md(logic.gaps_text(b['gaps']))})."
                + (f" At the last supervision point ({text.md(last)}) the gap is only {last_gap:+.3f}: the change that "
                   "flipped the predictions sits near the output, while the earlier layers still compute much of what "
                   "they computed before. That is **superficial forgetting**."
                   if last_gap is not None and b["worst_gap"] is not None and last_gap < b["worst_gap"] - 0.05 else
                   " The inner layers stay closer to the original than real forgetting would leave them: "
                   "**superficial forgetting**."))
else:
    st.markdown(f"Here no inner layer of {Bm} keeps clearly more of the original than the retrained model does "
                f"(distance to retrain {b_gap}; per layer: {text.md(logic.gaps_text(b['gaps']))}): this comparison "
                "shows little superficial forgetting. (Short training recipes leave the retrained model close to the "
                "original, which hides the effect.)")

# Step 3
step(3, "What Erase at the Core changes")
ec = rows.get("ec")
if ec is None:
    st.info("This comparison has no EC run; queue a comparison with EC to see this step.")
else:
    weights = ((res.get("config") or {}).get("ec") or {}).get("weights") or [1.0] * len(layers)
    on = [f"{text.md(l)} (×{w:g})" for l, w in zip(layers, weights) if isinstance(w, (int, float)) and w > 0]
    st.markdown(f"EC adds a contrastive unlearning loss on the forget set and a cross-entropy on the retain set at "
                f"its supervision points ({', '.join(on)}), through auxiliary modules on the intermediate layers. Its forget accuracy is "
                f"**{logic.pct(ec['forget_acc'])}** (retain {logic.pct(ec['retain_acc'])}), and the inner layers move "
                f"too: distance to retrain **{text.md(logic.distance_text(ec))}** (vs {Bm}'s {b_gap}), probe recovery's "
                f"**{text.md(logic.probe_distance_text(ec))}** (vs {text.md(logic.probe_distance_text(b))}).")
    ec_v = judged.get("ec")
    if ec_v and calibration.NOT_REACHED in ec_v["flags"]:
        st.warning(f"EC {calibration.NOT_REACHED} here: {text.md(calibration.missed(ec_v))}.",
                   icon=":material/warning:")
    if ec_v and "past retrain" in ec_v["flags"]:
        past = min((g for g in ec_v["gaps"] if g["inner"] and g["gap"] is not None), key=lambda g: g["gap"])
        st.warning(f"Judged against retrain, EC went too far here: at {text.md(past['point'])} its forget CKA is "
                   f"{past['gap']:+.3f} from retrain's (tolerance ±{past['tol']:.3f}), pushed further from the original "
                   "than the model that never saw the forget set. That is distortion, not forgetting; the goal is 0.",
                   icon=":material/warning:")
    elif ec_v and ec_v["verdict"] == "close to retrain":
        st.success("Judged against retrain, EC stays within the tolerance of retrain at every inner layer: the goal.",
                   icon=":material/check_circle:")
    names = [n for n in ("original", base, "ec", "retrain") if n in cka_o]
    widgets.show(delta_figures.delta_heatmap(verdict.to_retrain(cka_o, layers), layers, names,
                                             "Forget-set CKA to the original minus retrain's (0 = retrain)"),
                 key="teach_heat")

# Step 4
step(4, "What the retrained model shows")
retr_cka = " / ".join(logic.dec((cka_o.get("retrain") or {}).get(p), 3) for p in inner)
retr_probe = " / ".join(logic.pct((probe.get("retrain") or {}).get(p)) for p in inner)
st.markdown(f"The retrained model never saw {what}. Its forget CKA to the original is **{retr_cka}** and a probe "
            f"recovers **{retr_probe}** at {inner_md}: early layers stay similar because features that serve the other "
            "classes are learned anyway. That is the floor, layer by layer: unlearning should get close to it at "
            "every layer, not below it, and not only at the output.")
if b["distance"] is not None:
    st.success(f"Distance to retrain (the largest gap in forget CKA over {inner_md}; 0 = like retrain, the goal, in "
               f"either direction): {Bm} {b_gap}" + (f", EC {text.md(logic.distance_text(ec))}." if ec else "."),
               icon=":material/flag:")

# Step 5
step(5, "What was measured, and what the tuning pages are for")
past = [f"{text.md(g['point'])} ({g['gap']:+.3f}, tolerance ±{g['tol']:.3f})" for g in (ec or {}).get("gaps") or []
        if g["inner"] and g["within"] is False and g["gap"] < 0]  # below retrain beyond the tolerance
st.markdown(
    f"- **At the logits**: forget accuracy {Bm} {logic.pct(b['forget_acc'])}, EC "
    f"{logic.pct((ec or {}).get('forget_acc'))}, retrain {logic.pct(retr['forget_acc'])}.\n"
    f"- **In the layers**: the forget-set CKA to the original and a linear probe at every supervision point, each "
    f"read as a gap to retrain against the tolerance of two honest retrainings. Distance to retrain (worst inner "
    f"layer): {Bm} {b_gap}" + (f", EC {text.md(logic.distance_text(ec))}" if ec else "") + ".\n"
    + (f"- **Where EC went past retrain**: {', '.join(past)}"
       ": pushed further from the original than a model that never saw the class. That is distortion, not more "
       "forgetting.\n" if past else
       "- **EC and retrain**: EC went past retrain at no inner layer beyond the tolerance.\n" if ec else "")
    + "- **Tuning**: *Launch and tune* moves one supervision point's weight at a time and reads the run layer by layer "
      "against the default EC; *Sweeps* searches the layer weights and temperature for the smallest distance to "
      "retrain at the worst layer that keeps retain accuracy.")
st.info("**Takeaway**: forgetting is judged against retrain at every layer, not at the output: a model can get the "
        "forget class wrong and still hold it inside.", icon=":material/lightbulb:")
st.page_link("views/layers.py", label="See every method layer by layer", icon=":material/layers:")

# Step 6
@st.fragment(run_every=2.0)
def follow(job_id: str) -> None:
    """The comparison queued from this step, followed here: progress and stage while it runs, a cancel
    button; when it ends the whole page runs again, and the walk reads it (the newest teach comparison)."""
    j = data.get_job(job_id)
    if j is None:
        st.warning(f"Job {text.code(job_id)} is gone from the store.")
        return
    if j["state"] in logic.ACTIVE_STATES:
        widgets.progress_block(j, data.events_since(job_id))
        label = "Cancel requested…" if j.get("cancel_requested") else "Cancel this comparison"
        if st.button(label, key="teach_live_cancel", icon=":material/stop_circle:",
                     disabled=bool(j.get("cancel_requested"))):
            data.cancel(job_id)
            st.toast(f"Cancel requested for {job_id}")
    elif not st.session_state.get(f"_teach_ended_{job_id}"):  # ended while we watched: run the page once more
        st.session_state[f"_teach_ended_{job_id}"] = True
        data.invalidate_jobs()
        st.rerun(scope="app")


step(6, "Try it: forget another class")
n_classes = int(s.get("num_classes") or 0)
others = [c for c in range(n_classes) if c not in classes]
if others:
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    pick = c1.selectbox("Class to forget", others, key="teach_other",
                        format_func=lambda c: figures.class_label(s.get("class_names"), c))
    if c2.button("Queue this comparison", key="teach_other_queue", icon=":material/play_arrow:"):
        methods = (job.get("spec") or {}).get("methods")  # the same config and methods, another forget class
        try:
            new = data.submit("compare", {"config": {**(res.get("config") or {}), "forget": {"classes": [int(pick)]}},
                                          **({"methods": methods} if methods else {})})
            data.ensure_worker()
        except Exception as err:
            st.error(f"Not queued: {logic.error_text(err)}", icon=":material/error:")
        else:
            data.invalidate_jobs()
            st.query_params["job"] = new["id"]  # followed below; a reload keeps following it
    st.caption("The same scenario and methods with another forget class: does the baseline keep that class in its "
               "layers too, and does EC reach retrain there?")
live = data.get_job(st.query_params.get("job") or "")
if live is not None and live.get("kind") == "compare":
    lf = ((live.get("spec") or {}).get("config") or {}).get("forget") or {}
    st.markdown(f"**Queued job {text.code(live['id'])}**: the same comparison forgetting "
                f"{text.md(logic.forget_label({'forget': lf}))}.")  # its state: in the progress bar below
    if live["state"] in logic.ACTIVE_STATES:
        st.caption("Followed here while it runs (every page shows its progress too); when it ends, this walk "
                   "reads it from the top, as the newest teach comparison.")
        follow(live["id"])
    elif live["state"] == "done":
        st.success(f"Job {text.code(live['id'])} is done"
                   + (": the walk above reads it." if live["id"] == job["id"] else
                      "; pick it under “Results shown” in the sidebar to walk through it."),
                   icon=":material/check_circle:")
    else:
        widgets.job_error(live)

from dashboard import where_it_appears  # noqa: E402  teach, digits and Fashion-MNIST side by side
where_it_appears.render()
