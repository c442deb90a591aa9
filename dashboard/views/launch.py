"""Launch and tune: the run form (validated with engine.config, reached through dashboard/facts.py,
before anything is queued), live progress of the job in the URL (?job=), cancel, and the list of recent jobs."""
import pandas as pd
import streamlit as st

from dashboard import (audit_form, calibration, data, figures, launch_spec, logic, progress, runinfo, text, verdict,
                       widgets)
from dashboard.facts import (CONTRASTIVE_KNOBS, DATASET_CLASSES, METHOD_NAMES, METHODS, SUPERVISION_POINTS, ConfigError,
                             class_names, make_config, method_knobs, reads_ec)

ss = st.session_state
P = "session"  # widget values survive page switches


@st.cache_data(show_spinner=False)
def preset_defaults(preset: str) -> dict:
    """The preset's defaults (pure pydantic, cached)."""
    return make_config(preset).model_dump()


def apply_prefill() -> None:
    """'Use these settings' hand-off: st.session_state["prefill"] = {"config": {...}} or
    {"preset": ..., "overrides": {...}} (optional "source": text shown to the user)."""
    pre = ss.pop("prefill", None)
    if not pre:
        return
    try:
        cfg = launch_spec.prefill_config(pre)
    except (ConfigError, ValueError) as err:
        st.warning(f"Could not use the handed-over settings: {logic.error_text(err)}")
        return
    preset = cfg.preset if cfg.preset in launch_spec.PRESET_CHOICES else "digits"
    arch = cfg.model.arch
    ss["l_preset"] = preset
    ss[f"l_arch__{preset}"] = arch
    ss["l_method"] = cfg.method
    ss["l_plugin"] = cfg.plugin == "ec"
    ss["l_beta"] = float(cfg.beta)
    for p, w in zip(cfg.supervision_points, cfg.layer_weights):
        ss[f"l_w__{arch}__{p}"] = float(min(5.0, max(0.0, w)))
    own = method_knobs(cfg.method)
    knobs = cfg.method_config() if any(k in own for k in CONTRASTIVE_KNOBS) else cfg.ec
    ss["l_tau"] = float(knobs.tau)
    ss["l_lcu"] = float(knobs.lambda_cu)
    ss["l_lce"] = float(knobs.lambda_ce)
    if "epochs" in own:
        mc = cfg.method_config()
        ss[f"l_epochs__{preset}__{cfg.method}"] = int(mc.epochs)
        ss[f"l_lr__{preset}__{cfg.method}"] = float(mc.lr)
    dataset = cfg.data.dataset
    if cfg.forget.random is not None:
        ss["l_forget_mode"] = "random share"
        ss["l_random"] = float(cfg.forget.random)
    else:
        ss["l_forget_mode"] = "classes"
        ss[f"l_classes__{dataset}"] = list(cfg.forget.classes or [])
    ss["l_seed"] = int(cfg.seed)
    ss["l_device"] = cfg.device
    ss["l_calibrate"] = cfg.calibrate
    ss["l_extra"] = {"preset": preset, "overrides": launch_spec.extra_overrides(cfg, preset_defaults(preset))}
    ss["_prefill_note"] = str(pre.get("source") or "handed-over settings")


def restore_from_url() -> None:
    """A reload of `?job=ID` (or a shared link) fills the form with that run's settings, once per job:
    never the defaults above another run's results."""
    job_id = st.query_params.get("job")
    if not job_id or ss.get("_restored_job") == job_id or "prefill" in ss:
        return
    ss["_restored_job"] = job_id
    job = data.get_job(job_id)
    cfg = ((job or {}).get("spec") or {}).get("config")
    if job and job.get("kind") == "run" and cfg:
        ss["prefill"] = {"config": cfg, "source": f"job {job_id} (from the address bar)"}


def _init(key: str, value) -> None:
    """Defaults go through session state (never `value=`), so a hand-off can preset any widget."""
    if key not in ss:
        ss[key] = value


# Streamlit keeps the scroll position of the page a hand-off came from ("Use these settings" sits low on
# Sweeps and Compare), which left the form half scrolled past: bring its top, and the notice, into view.
SCROLL_TO_FORM = """<script>
for (const ms of [0, 150, 400]) setTimeout(() => {
  const top = document.getElementById("new-run");
  if (top) top.scrollIntoView({block: "start"});
}, ms);
</script>"""


# No min / max on the number inputs: the browser would keep an out-of-range entry red on screen but send
# the last valid value, and the run would be queued with a value the form does not show. Every typed value
# reaches engine.config, which refuses it with the option named (and nothing is queued).
def form() -> None:
    st.subheader("New run", anchor="new-run")
    if ss.get("_prefill_note"):
        st.success(f"Settings loaded from {text.md(ss.pop('_prefill_note'))}. Check them and queue the run.",
                   icon=":material/input:")
        st.html(SCROLL_TO_FORM, unsafe_allow_javascript=True)
    c1, c2, c3 = st.columns(3)
    _init("l_preset", widgets.shown_preset(launch_spec.PRESET_CHOICES))
    preset = c1.selectbox("Data set / preset", launch_spec.PRESET_CHOICES, key="l_preset", persist_state=P,
                          help="  \n".join(f"**{p}**: {n}" for p, n in launch_spec.PRESET_NOTES.items()))
    c1.caption(launch_spec.PRESET_NOTES.get(preset, ""))
    d = preset_defaults(preset)
    archs = list(SUPERVISION_POINTS)
    arch_key = f"l_arch__{preset}"
    _init(arch_key, d["model"]["arch"])
    arch = c2.selectbox("Architecture", archs, key=arch_key, persist_state=P)
    methods = [m for m in METHOD_NAMES]
    _init("l_method", "ec")
    method = c3.selectbox("Method", methods, key="l_method", format_func=figures.display_name, persist_state=P)

    info = METHODS[method]
    can_plug = info.pluggable
    c1, c2 = st.columns([1, 2])
    plugin = c1.toggle("EC plug-in", key="l_plugin", disabled=not can_plug, persist_state=P,
                       help="Add EC's layer-wise contrastive loss on top of this method (weight β)." if can_plug
                       else f"Not available for {figures.display_name(method)}: "
                            + ("EC already is this loss." if info.reads_ec
                               else "it trains from scratch without the forget set."))
    plugin = bool(plugin and can_plug)
    beta = 1.0
    if plugin:
        _init("l_beta", float(d["beta"]))
        beta = c2.number_input("β (weight of the EC plug-in loss)", step=0.1, key="l_beta", persist_state=P)
    uses_ec = reads_ec(method, plugin)  # the layer weights and EC's knobs (section `ec`) apply
    own = method_knobs(method)  # the method's own options in the form (engine/catalog.py)
    points = SUPERVISION_POINTS[arch]

    weights: list[float] = []
    if uses_ec:
        st.markdown("**Layer weights** (one per supervision point; 0 switches a point off)")
        wcols = st.columns(len(points))
        for col, p in zip(wcols, points):
            key = f"l_w__{arch}__{p}"
            _init(key, 1.0)
            weights.append(col.slider(p, 0.0, 5.0, step=0.1, key=key, persist_state=P))
    own_contrastive = any(k in own for k in CONTRASTIVE_KNOBS)  # CU: its own tau and lambdas
    knob_src = d["methods"][method] if own_contrastive else d["ec"]
    tau, lcu, lce = knob_src["tau"], knob_src["lambda_cu"], knob_src["lambda_ce"]
    if uses_ec or own_contrastive:
        c1, c2, c3 = st.columns(3)
        _init("l_tau", float(knob_src["tau"]))
        _init("l_lcu", float(knob_src["lambda_cu"]))
        _init("l_lce", float(knob_src["lambda_ce"]))
        tau = c1.select_slider("Temperature τ (log scale)", launch_spec.with_value(launch_spec.TEMPERATURES, ss["l_tau"]),
                               key="l_tau", format_func=lambda v: f"{v:g}", persist_state=P,
                               help="Contrastive temperature: lower = sharper pull/push between samples.")
        lcu = c2.number_input("λ_CU (contrastive unlearning weight)", step=0.5, key="l_lcu", persist_state=P)
        lce = c3.number_input("λ_CE (retain cross-entropy weight)", step=0.5, key="l_lce", persist_state=P)

    epochs, lr = 1, 0.01
    c1, c2, c3 = st.columns(3)
    if "epochs" in own:
        mc = d["methods"][method]
        ekey, lkey = f"l_epochs__{preset}__{method}", f"l_lr__{preset}__{method}"
        _init(ekey, int(mc["epochs"]))
        _init(lkey, float(mc["lr"]))
        epochs = c1.number_input("Unlearning epochs", step=1, key=ekey, persist_state=P)
        lr = c2.select_slider("Learning rate (log scale)", launch_spec.with_value(launch_spec.LEARNING_RATES, ss[lkey]),
                              key=lkey, format_func=lambda v: f"{v:g}", persist_state=P)
    else:
        c1.caption("Retrain uses the training recipe of the preset (train.*), not an unlearning schedule.")
    _init("l_seed", 0)
    seed = c3.number_input("Seed", step=1, key="l_seed", persist_state=P)
    _init("l_calibrate", d.get("calibrate", "auto"))
    calibrate = ss["l_calibrate"]
    if "epochs" in own:  # calibration searches lr x epochs
        c1, c2 = st.columns([1, 2])
        calibrate = c1.selectbox("Calibration", calibration.MODES, key="l_calibrate", persist_state=P,
                                 format_func=lambda m: calibration.mode_label(m, preset), help=calibration.MODE_HELP)
        if calibrate == "on":
            c2.caption("The run searches learning rate × epochs around the values above (about 3× the time) unless "
                       "a comparison of this scenario already did. The job page says which setting ran.")
        elif calibration.resolved_mode(calibrate, preset) == "on":
            c2.caption("At the recipe's epochs and learning rate, the run uses a comparison's calibrated setting for "
                       "this scenario when one exists; values you change run as you set them. The job page says which.")

    dataset = d["data"]["dataset"]
    n_classes = DATASET_CLASSES.get(dataset, 10)
    names = class_names(dataset, n_classes)
    c1, c2 = st.columns([1, 2])
    mode = c1.radio("Forget request", ["classes", "random share"], key="l_forget_mode", horizontal=True,
                    persist_state=P)
    classes, share = [], 0.1
    if mode == "classes":
        ckey = f"l_classes__{dataset}"
        _init(ckey, [3] if n_classes > 3 else [0])
        classes = c2.multiselect("Forget classes", list(range(n_classes)), key=ckey, accept_new_options=True,
                                 format_func=lambda c: _fmt_class(c, names), persist_state=P,
                                 help="Pick classes, or type a class id.")
    else:
        _init("l_random", 0.1)
        share = c2.slider("Random share of training samples", 0.01, 0.5, step=0.01, key="l_random",
                          format="%.2f", persist_state=P)
    with st.expander("More options"):
        device = st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="l_device", persist_state=P,
                              help="auto: CUDA, then MPS, then CPU")

    extra = ss.get("l_extra") or {}
    extra_ov = extra.get("overrides") if extra.get("preset") == preset else None
    if extra_ov:
        c1, c2 = st.columns([5, 1])
        c1.caption("Also kept from the hand-off (options this form does not show): "
                   + ", ".join(text.code(t) for t in launch_spec.dotted(extra_ov)))
        c2.button("Drop them", key="l_drop_extra", on_click=lambda: ss.pop("l_extra", None))
    values = {"preset": preset, "method": method, "plugin": plugin, "beta": beta, "arch": arch,
              "weights": weights, "tau": tau, "lambda_cu": lcu, "lambda_ce": lce, "epochs": epochs, "lr": lr,
              "forget_mode": "random" if mode == "random share" else "classes", "classes": classes,
              "random": share, "seed": seed, "device": device, "calibrate": calibrate}
    if st.button("Queue run", type="primary", key="l_submit", icon=":material/play_arrow:"):
        queue(values, extra_ov)


def _fmt_class(c, names) -> str:
    if isinstance(c, int) and 0 <= c < len(names) and names[c] != str(c):
        return f"{c} · {names[c]}"
    return str(c)


def queue(values: dict, extra: dict | None = None) -> None:
    """Validate (engine.config) and queue; on any invalid option show it and queue nothing."""
    try:
        spec = launch_spec.build_run_spec(values, extra)
        launch_spec.check_spec(spec)
    except ConfigError as err:
        st.error(logic.error_text(err) + " Nothing was queued.", icon=":material/error:")
        return
    try:
        with st.spinner("Queueing…"):
            job = data.submit("run", spec)
    except (ConfigError, ValueError) as err:
        st.error(logic.error_text(err) + " Nothing was queued.", icon=":material/error:")
        return
    except Exception as err:  # the job table is locked or unreadable
        st.error(f"Could not queue the run: {text.md(err)}", icon=":material/error:")
        return
    data.ensure_worker()
    ss["_restored_job"] = job["id"]  # the form already holds these settings
    st.query_params["job"] = job["id"]
    if job.get("cached"):
        st.success(f"The same configuration already ran (job `{job.get('cached_from')}`): its results were reused "
                   f"as job `{job['id']}`.")
    elif job.get("duplicate_of"):
        st.info(f"The same configuration is already {job['state']} as job `{job['id']}`; showing it.")
    else:
        st.toast(f"Queued job {job['id']}: its progress is right below the form", icon=":material/schedule:")


# -- the watched job --------------------------------------------------------------------------

def _events(job_id: str) -> list[dict]:
    """Events so far, fetched incrementally (step events dropped after the newest)."""
    key = f"_ev__{job_id}"
    store = ss.get(key) or {"seq": 0, "events": []}
    new = data.events_since(job_id, after_seq=store["seq"])
    if new:
        store["seq"] = new[-1]["seq"]
        kept = [e for e in store["events"] if e.get("type") != "step"]
        store["events"] = kept + [e for e in new if e.get("type") != "step"] + \
            [e for e in new if e.get("type") == "step"][-1:]
    ss[key] = store
    return store["events"]


def _state_caption(job: dict) -> None:
    st.caption(f"state **{job['state']}** · created {logic.fmt_time(data.jt(job, 'created'))}"
               + (f" · took {logic.elapsed(job)}" if job["state"] in ("done", "failed") and data.jt(job, 'started') else ""))


def _live_warnings(job: dict, last: dict) -> None:
    """Damage warnings while the run goes, against the reference rows of the same scenario (from any
    finished comparison or run of it; none yet: no warning)."""
    refs = verdict.scenario_references(data.all_results(data.jobs()), (job.get("spec") or {}).get("config"))
    if refs is None:
        return
    orig, ret = refs
    for f in verdict.live_flags(last, orig, ret):
        if f == "retain damaged":
            st.warning(f"Retain accuracy fell to **{logic.pct(last.get('retain_acc'))}** at epoch {last.get('epoch')} "
                       f"(original {logic.pct(orig.get('retain_acc'))}): this run is damaging the model.",
                       icon=":material/warning:")
        else:
            st.warning(f"Forget accuracy ended at **{logic.pct(last.get('forget_acc'))}**, more than "
                       f"{verdict.FORGET_TOL:.0%} from retrain's {logic.pct(ret.get('forget_acc'))}.",
                       icon=":material/warning:")


def _render_progress(job: dict, events: list[dict]) -> None:
    _state_caption(job)
    widgets.progress_block(job, events)
    run, hist = logic.epoch_history(events)
    if hist and job.get("kind") == "run":
        _live_warnings(job, hist[-1])
    if hist:
        st.caption(f"Live curves of **{text.md(figures.display_name(run))}** (epoch {hist[-1].get('epoch')}/"
                   f"{hist[-1].get('epochs', '?')})")
        layers = list((hist[-1].get("cka_forget") or {}).keys())
        _curves(hist, layers, f"live_{job['id']}")
    logs = [e for e in events if e.get("type") in ("stage", "log")][-4:]
    if logs:
        st.caption("  \n".join(text.md(e.get("message") or e.get("stage")) for e in logs))


def _curves(hist: list[dict], layers: list[str], key: str) -> None:
    """Losses and accuracies by epoch, and per-layer CKA by epoch when reported."""
    if not figures.has_accuracy(hist):
        st.caption("Forget and retain accuracy were not measured by epoch in this run (a model kept from "
                   "calibration is scored only at its end): the table above has its final numbers.")
    if layers:
        c1, c2 = st.columns([3, 2])
        with c1:
            widgets.show(figures.training_curves(hist), key=f"{key}_curves")
        with c2:
            widgets.show(figures.epoch_cka_lines(hist, layers), key=f"{key}_cka")
    else:
        widgets.show(figures.training_curves(hist), key=f"{key}_curves")


@st.fragment(run_every=1.0)
def live(job_id: str) -> None:
    job = data.get_job(job_id)
    if job is None:
        st.warning(f"Job {text.code(job_id)} is gone from the store.")
        return
    events = _events(job_id)
    _render_progress(job, events)
    if job["state"] in logic.ACTIVE_STATES:
        label = "Cancel requested…" if job.get("cancel_requested") else "Cancel job"
        if st.button(label, key=f"cancel_{job_id}", icon=":material/stop_circle:",
                     disabled=bool(job.get("cancel_requested"))):
            data.cancel(job_id)
            st.toast(f"Cancel requested for {job_id}")
    else:  # finished while we watched: render the final state once, without polling
        data.invalidate_jobs()
        st.rerun(scope="app")


def _open_results(job_id: str) -> None:
    widgets.select_results(job_id)


def _run_again(job: dict) -> None:
    """Queue a finished job's configuration again, bypassing the cache (engine.api submit use_cache=False)."""
    try:
        new = data.api().submit(job["kind"], job["spec"], use_cache=False)
    except Exception as err:  # invalid by now, or the job table is unavailable
        ss["_run_again_error"] = logic.error_text(err) if isinstance(err, ConfigError) else str(err)
        return
    data.invalidate_jobs()
    data.ensure_worker()
    st.query_params["job"] = new["id"]


def _calibration_used(res: dict) -> None:
    """Whether the run used a calibrated setting, and which (issue 9)."""
    for label in logic.method_runs(res):
        run = res["runs"][label]
        line = f"**{text.md(figures.display_name(label))}**: {text.md(calibration.detail(run))}"
        if calibration.block(run) is None:
            st.caption(line)
        elif calibration.not_forgotten(run):
            st.warning(line, icon=":material/warning:")
        else:
            st.info(line, icon=":material/tune:")


def final(job: dict) -> None:
    widgets.job_error(job)
    if job["state"] != "done":
        events = _events(job["id"])
        _render_progress(job, events)
        return
    if job.get("kind") not in logic.RESULT_KINDS:
        st.success(f"Job `{job['id']}` is done.")
        return
    st.button("Run again", key=f"again_{job['id']}", on_click=_run_again, args=(job,), icon=":material/replay:",
              help="Queue the same configuration again without reusing cached results (e.g. when they look wrong).")
    if ss.get("_run_again_error"):
        st.error(f"Could not queue it again: {ss.pop('_run_again_error')}", icon=":material/error:")
    try:
        res = data.results(job)
    except Exception as err:
        widgets.damaged_card(job["id"], err)
        return
    if not res:
        st.warning("This job is done but wrote no results.")
        return
    note = f" (reused from job `{job['cached_from']}`)" if job.get("cached_from") else ""
    st.success(f"Job `{job['id']}` is done{note}: {text.md(logic.scenario_line(res))}.")
    rows = verdict.rows_vs_retrain(res)
    if job.get("kind") == "run":
        _calibration_used(res)
    P = widgets.as_pct
    table = pd.DataFrame([{"Run": widgets.fmt_run(r["name"]), "Settings": runinfo.run_settings(res, r["name"]),
                           "Calibration": r["setting"], "Forget acc": P(r["forget_acc"]), "Retain acc": P(r["retain_acc"]),
                           "Test acc": P(r["test_acc"]), "MIA efficacy": P(r["mia"]),
                           **widgets.headline_cells(r), "Verdict": r["verdict"]} for r in rows])
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={k: widgets.pct_col() for k in ("Forget acc", "Retain acc", "Test acc", "MIA efficacy")}
                 | widgets.headline_columns() | widgets.fitted(table, "Settings", "Calibration", "Verdict"))
    widgets.run_warnings([{**r, "settings": runinfo.run_settings(res, r["name"])} for r in rows])
    widgets.calibration_note(rows)
    for label in logic.method_runs(res) if job.get("kind") == "run" else []:
        widgets.calibration_grid(res["runs"][label], label, key=f"cal_grid_{job['id']}_{label}")
    if job.get("kind") == "run":
        widgets.scenario_history(job, res)
    label = next((n for n in logic.method_runs(res)), None)
    hist = ((res.get("runs") or {}).get(label) or {}).get("history") if label else None
    if hist:
        st.caption(f"**{text.md(figures.display_name(label))}** by epoch")
        layers = list(res.get("layers") or []) if any(h.get("cka_forget") for h in hist) else []
        _curves(hist, layers, f"final_{job['id']}")
    if st.button("Show on the analysis pages", key=f"open_{job['id']}", on_click=_open_results, args=(job["id"],),
                 icon=":material/insights:"):
        st.switch_page("views/overview.py")


def watched() -> None:
    job_id = st.query_params.get("job")
    if not job_id:
        return
    job = data.get_job(job_id)
    st.divider()
    if job is None:
        st.warning(f"No job {text.code(job_id)} in this store (from the address bar).")
        return
    settings = runinfo.job_settings(job)
    st.subheader(f"Job {text.code(job_id)} · {text.md(logic.job_label(job))}" + (f" · {text.md(settings)}" if settings else ""))
    if job["state"] not in logic.ACTIVE_STATES:
        _state_caption(job)
    if job["state"] in logic.ACTIVE_STATES:
        if job["state"] == "queued" and not data.worker_alive():
            st.warning("No worker is running: this job waits until one starts"
                       + (" (`python -m engine worker`)." if not data.autostart_enabled() else "."))
        live(job_id)
    else:
        final(job)


def _watch(job_id: str | None) -> None:
    if job_id:
        st.query_params["job"] = job_id


def _what(job: dict) -> str:
    """'run ec · digits · w 0/2.5/2.5/1 tau 0.3': the job and, for a run, its settings."""
    settings = runinfo.job_settings(job)
    return logic.job_label(job) + (f" · {settings}" if settings else "")


def recent_jobs() -> None:
    st.divider()
    st.subheader("Recent jobs")
    jobs = data.jobs()[:30]
    if not jobs:
        st.caption("No jobs yet.")
        return
    # while a job is queued or running the table refreshes on its own, as the job panel above does
    live_table = any(j["state"] in logic.ACTIVE_STATES for j in jobs)
    (st.fragment(run_every=2.0)(_jobs_table) if live_table else _jobs_table)()
    ids = [j["id"] for j in jobs]
    labels = {j["id"]: f"{j['id']} · {_what(j)}" for j in jobs}
    cur = st.query_params.get("job")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Show a job", ids, index=ids.index(cur) if cur in ids else None, key="l_pick",
                        format_func=lambda i: labels[i], placeholder="choose a job…")
    c2.button("Show", key="l_show", on_click=_watch, args=(pick,), disabled=pick is None or pick == cur)
    for j in jobs:
        if j["state"] == "failed" and j["id"] != cur:
            st.caption(f":red[failed] {text.code(j['id'])} ({text.md(logic.job_label(j))}): "
                       f"{text.md(j.get('error') or 'no message')}")


def _jobs_table() -> None:
    jobs = data.jobs()[:30]
    df = pd.DataFrame([{
        "Job": j["id"], "What": _what(j), "State": j["state"],
        "Progress": 100.0 * float(j.get("progress") or 0.0),
        "Stage": progress.stage_label(j.get("stage"), j.get("kind")),
        "Created": logic.fmt_time(data.jt(j, "created")),
    } for j in jobs])
    # No error column: it would be cut off; the errors of failed jobs are listed in full below.
    st.dataframe(df, hide_index=True, width="stretch",
                 column_config={"Job": st.column_config.TextColumn(width=170),
                                "Progress": st.column_config.ProgressColumn(format="%.0f%%", min_value=0, max_value=100),
                                "Created": st.column_config.TextColumn(width=150)})


st.title("Launch and tune")
st.caption("Runs go to the background worker; this page only queues them and follows their progress. "
           "Every option is checked before anything is queued.")
restore_from_url()
apply_prefill()
form()
watched()  # the queued job's progress right below the form that queued it
audit_form.section(ss["l_preset"])
recent_jobs()
