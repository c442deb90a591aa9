"""Widgets shared by the pages: the sidebar, the results picker, empty / computing / failed states,
job progress, figure display with HTML export."""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

import pandas as pd

from . import calibration, data, facts, figures, logic, progress, runinfo, text, verdict

ASSETS = Path(__file__).resolve().parent.parent / "assets"
RESULTS_KEY = "results_job"
AUTO_KEY = "_results_auto"


def inject_css() -> None:
    css = ASSETS / "style.css"
    if css.is_file():
        st.html(f"<style>{css.read_text()}</style>")


def autostart_worker() -> None:
    """Make sure a worker is alive (at most every 20 s per session). Off with ECLAB_NO_AUTOSTART=1."""
    if not data.autostart_enabled():
        return
    now = time.time()
    if now - st.session_state.get("_worker_check", 0.0) < 20:
        return
    st.session_state["_worker_check"] = now
    try:
        if data.ensure_worker():
            st.toast("Started a background worker.", icon=":material/memory:")
    except Exception as err:  # never block the page on this
        st.session_state["_worker_error"] = str(err)


# -- results selection ---------------------------------------------------------------------------

def _result_label(job: dict) -> str:
    """Short enough for the sidebar: 'digits · forget 3 · compare · 09:41' (the job id is in the
    caption under the picker)."""
    return logic.results_label(job, data.jt(job, "finished"))


def default_results_job(done: list[dict]) -> dict | None:
    """The newest done compare job, else the newest done run job. While the only comparisons are the
    first start's defaults, the first of them (teach, where the effect shows) rather than the newest."""
    compares = [j for j in done if j.get("kind") == "compare"]
    first = data.first_start_jobs()
    if compares and all(j["id"] in first for j in compares):
        return min(compares, key=lambda j: first.index(j["id"]))
    return compares[0] if compares else (done[0] if done else None)


def results_picker(all_jobs: list[dict]) -> dict | None:
    """Sidebar selectbox of done results; returns the selected job."""
    done = data.done_result_jobs(all_jobs)
    if not done:
        st.session_state.pop(RESULTS_KEY, None)
        return None
    ids = [j["id"] for j in done]
    by_id = {j["id"]: j for j in done}
    # Streamlit finds a picked option by its label: every job needs its own
    labels = dict(zip(ids, logic.distinct_labels([_result_label(j) for j in done],
                                                 [runinfo.job_settings(j) for j in done])))
    _follow_link(all_jobs, by_id)
    cur = st.session_state.get(RESULTS_KEY)
    # Follow the newest comparison until the user picks something else.
    if cur not in by_id or st.session_state.get(AUTO_KEY, True):
        st.session_state[RESULTS_KEY] = default_results_job(done)["id"]
        st.session_state[AUTO_KEY] = True
    sel = st.selectbox("Results shown", ids, key=RESULTS_KEY, on_change=_picked,
                       format_func=labels.__getitem__,
                       help="The comparison (or single run) the analysis pages show: data set, forget "
                            "request, what ran, finish time. Default: the newest finished comparison.")
    return by_id.get(sel)


def _follow_link(all_jobs: list[dict], by_id: dict) -> None:
    """An address with ?results=JOB (the Grid page's cells link to their comparison so) shows that job,
    once per address: a later pick in the sidebar wins. A cache hit shows the run it was copied from."""
    asked = st.query_params.get("results")
    if not asked or st.session_state.get("_results_link") == asked:
        return
    source = next((j.get("cached_from") for j in all_jobs if j["id"] == asked), None)
    job_id = asked if asked in by_id else source
    if job_id in by_id:
        st.session_state["_results_link"] = asked
        st.session_state[RESULTS_KEY] = job_id
        st.session_state[AUTO_KEY] = False


def _picked() -> None:
    st.session_state[AUTO_KEY] = False


def select_results(job_id: str) -> None:
    """Show this job on the analysis pages (call from a callback, before the sidebar renders)."""
    st.session_state[RESULTS_KEY] = job_id
    st.session_state[AUTO_KEY] = False


def selected_results_job(all_jobs: list[dict]) -> dict | None:
    done = data.done_result_jobs(all_jobs)
    by_id = {j["id"]: j for j in done}
    return by_id.get(st.session_state.get(RESULTS_KEY)) or default_results_job(done)


def shown_preset(choices) -> str:
    """The preset of the results the pages show (the sidebar's pick) when it is one of `choices`, else
    the first choice: a new run or sweep starts from the scenario on screen."""
    job = selected_results_job(data.jobs())
    preset = logic.spec_config((job or {}).get("spec")).get("preset")
    return preset if preset in choices else list(choices)[0]


def sidebar() -> None:
    all_jobs = data.jobs()
    with st.sidebar:
        alive = data.worker_alive()
        if alive:
            st.markdown(":green[●] **Worker running**")
        else:
            st.markdown(":red[●] **No worker running**")
            if data.autostart_enabled():
                if st.button("Start worker", key="sb_start_worker", icon=":material/play_arrow:"):
                    st.session_state.pop("_worker_check", None)
                    data.ensure_worker()
                    st.rerun()
            else:
                st.caption("Start one with `python -m engine worker`.")
            if st.session_state.get("_worker_error"):
                st.caption(f"Could not start a worker: {text.md(st.session_state['_worker_error'])}")
        active = [j for j in all_jobs if j.get("state") in logic.ACTIVE_STATES]
        if active:
            st.caption(f"{len(active)} job(s) queued or running")
        job = results_picker(all_jobs)
        if job is not None:
            try:
                res = data.results(job)
            except Exception:
                res = None
            lines = [f"Job {text.code(job['id'])} ({job.get('kind')})"]
            if runinfo.job_settings(job):
                lines.append(f"Settings: {text.md(runinfo.job_settings(job))}")
            if res:
                s = res.get("scenario") or {}
                lines += [text.md(logic.scenario_line(res)),
                          f"{s.get('n_forget', '?')} forget / {s.get('n_retain', '?')} retain samples"]
            st.caption("**Scenario**  \n" + "  \n".join(lines))
        watched = st.query_params.get("job")
        if watched:
            wj = data.get_job(watched)
            if wj is not None:
                settings = runinfo.job_settings(wj)
                st.caption(f"**Watching job** {text.code(wj['id'])}  \n{text.md(logic.job_label(wj))} · {wj['state']}"
                           + (f"  \n{text.md(settings)}" if settings else ""))


# -- page guards ---------------------------------------------------------------------------------

def _newest(all_jobs: list[dict], kind: str) -> dict | None:
    return next((j for j in all_jobs if j.get("kind") == kind), None)


def results_page(title: str) -> tuple[dict, dict, list, dict]:
    """A results page's start: its title, then the selected (job, results, layers, scenario); with no
    results it renders the empty / computing state and stops the page."""
    st.title(title)
    ctx = require_results()
    if ctx is None:
        st.stop()
    job, res = ctx
    return job, res, list(res.get("layers") or []), res.get("scenario") or {}


def require_results() -> tuple[dict, dict] | None:
    """The selected (job, results), after reporting newer computing or failed comparisons.
    With no results it renders the empty / computing state and returns None."""
    all_jobs = data.jobs()
    job = selected_results_job(all_jobs)
    newest = _newest(all_jobs, "compare")
    if job is None:
        empty_state(all_jobs)
        return None
    if newest is not None and newest["id"] != job["id"] and (data.jt(newest, "created") or 0) > (data.jt(job, "created") or 0):
        if newest["state"] in logic.ACTIVE_STATES:
            st.info(f"A newer comparison (job `{newest['id']}`) is {newest['state']}: "
                    f"{100 * (newest.get('progress') or 0):.0f}% "
                    f"({progress.stage_label(newest.get('stage'), newest.get('kind')) or 'waiting'}). "
                    "These pages show the newest finished one until then.", icon=":material/hourglass_top:")
        elif newest["state"] == "failed":
            st.warning(f"The newest comparison (job `{newest['id']}`) failed: {text.md(newest.get('error') or 'no message')}",
                       icon=":material/error:")
    try:
        res = data.results(job)
    except Exception as err:
        damaged_card(job["id"], err)
        return None
    if not res:
        st.error(f"Job {text.code(job['id'])} is done but has no results.json; rerun it from the Launch page.")
        return None
    if logic.lacks_retrain(res):
        st.warning(logic.NO_RETRAIN_NOTE, icon=":material/info:")
    return job, res


def damaged_card(job_id: str, err) -> None:
    """A results file that is corrupt or has the wrong types: say so, name the job, never raise."""
    st.error(f"This run's results are damaged: rerun it. Job {text.code(job_id)}: {text.md(err)}",
             icon=":material/broken_image:")


def empty_state(all_jobs: list[dict]) -> None:
    """No finished results: show the computing comparison, the failure, or a button to queue one."""
    active = [j for j in all_jobs if j.get("kind") in ("compare", "run") and j.get("state") in logic.ACTIVE_STATES]
    # the job the worker is on (else the next it takes, the oldest queued): all_jobs is newest first
    active = next((j for j in active if j["state"] == "running"), active[-1] if active else None)
    if active is not None:
        preset = ((active.get("spec") or {}).get("config") or {}).get("preset")
        what = (("the default comparison" + (f" ({text.md(preset)})" if preset else ""))
                if active["kind"] == "compare" else text.md(logic.job_label(active)))
        st.subheader(f"Computing {what}…")
        st.caption("The reference rows and each method appear below as soon as they are evaluated; every page "
                   "fills in when the comparison ends. You can close this tab: the work runs in the background worker.")
        _computing_fragment(active["id"])
        if not data.worker_alive() and not data.autostart_enabled():
            st.warning("No worker is running, so nothing will progress: start one with `python -m engine worker`.")
        return
    failed = next((j for j in all_jobs if j.get("kind") in ("compare", "run")), None)
    if failed is not None and failed.get("state") in ("failed", "cancelled"):
        if failed["state"] == "failed":
            st.error(f"The last {failed['kind']} job (`{failed['id']}`) failed: {text.md(failed.get('error') or 'no message')}",
                     icon=":material/error:")
        else:
            st.warning(f"The last {failed['kind']} job (`{failed['id']}`) was cancelled.")
    st.subheader("No results yet")
    st.markdown("EC Lab compares **Erase at the Core** with ten baselines on one scenario. The default "
                "comparisons (a small CNN, forget class 3) run on a laptop CPU in a few minutes: first **teach**, "
                "synthetic textures where superficial forgetting is plain to see, then **digits**, scikit-learn's "
                "8×8 real handwriting.")
    if st.button("Queue the default comparisons", type="primary", key="queue_default",
                 icon=":material/play_arrow:"):
        queue_default_compare()


def queue_default_compare() -> None:
    try:
        with st.spinner("Queueing…"):
            ids = data.queue_defaults()
            data.ensure_worker()
    except Exception as err:
        st.error(logic.error_text(err))
        return
    st.toast(f"Queued jobs {', '.join(ids)}", icon=":material/schedule:")
    st.rerun()


@st.fragment(run_every=2.0)
def _computing_fragment(job_id: str) -> None:
    job = data.get_job(job_id)
    if job is None:
        return
    events = data.events_since(job_id)
    progress_block(job, events)  # with the events: the epoch of a long training (a second original: minutes)
    if job["state"] not in logic.ACTIVE_STATES:
        data.invalidate_jobs()
        st.rerun(scope="app")
    if job.get("kind") == "compare":
        _first_results(job, events)


def _first_results(job: dict, events: list[dict]) -> None:
    """The stage checklist with an estimate, and the rows that exist already: the reference rows
    once original and retrain are evaluated, then each method as soon as it is evaluated."""
    part = data.partial(job["id"])
    spec = job.get("spec") or {}
    n = len(spec.get("methods") or []) or 10
    check = progress.checklist(events, n, part, job["state"], time.time(),
                               (spec.get("config") or {}).get("preset"))
    st.markdown(progress.checklist_markdown(check))
    if not part:
        return
    rows = verdict.rows_vs_retrain(part)
    methods = [r for r in rows if r["role"] == "method"]
    st.markdown(f"**Partial results** — {len(methods)} of {n} methods so far; the reference rows first. "
                "All pages fill in when the comparison ends.")
    st.dataframe(pd.DataFrame([{
        "Run": fmt_run(r["name"]), "Forget acc": as_pct(r["forget_acc"]), "Retain acc": as_pct(r["retain_acc"]),
        **headline_cells(r), "Verdict": r["verdict"]} for r in rows]),
        hide_index=True, width="stretch", key="partial_rows",
        column_config={"Forget acc": pct_col(), "Retain acc": pct_col(), **headline_columns()})
    run_warnings(methods)


def progress_block(job: dict, events: list[dict] | None = None) -> None:
    p = float(job.get("progress") or 0.0)
    stage = (progress.stage_label(job.get("stage"), job.get("kind"))
             or ("waiting for the worker" if job["state"] == "queued" else ""))
    epoch = progress.epoch_text(events or [])
    ev = logic.last_stage(events) if events else None
    msg = progress.message_news((ev or {}).get("message"), f"{stage} {epoch}")
    msg = f" — {msg}" if msg else ""
    took = logic.elapsed(job) if job.get("state") == "running" else ""
    st.progress(min(1.0, max(0.0, p)), text=f"{job['state']} · {100 * p:.0f}% · {stage}"
                                            + (f" · {epoch}" if epoch else "") + msg + (f" · {took}" if took else ""))


def job_error(job: dict) -> None:
    if job.get("state") == "failed":
        st.error(f"Job `{job['id']}` failed: {text.md(job.get('error') or 'no message recorded')}", icon=":material/error:")
    elif job.get("state") == "cancelled":
        st.warning(f"Job `{job['id']}` was cancelled.")


# -- figures ------------------------------------------------------------------------------------

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def show(fig, key: str, export: str | None = None) -> None:
    """Render a figure; with `export` (a file stem), add a self-contained HTML download made on
    click (plotly.js embedded, so the file opens offline)."""
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG)
    if export:
        st.download_button("Figure as HTML", data=lambda f=fig: figures.figure_html(f),
                           file_name=f"{export}.html", mime="text/html", key=f"dl_{key}",
                           on_click="ignore", icon=":material/download:")


def fit_width(values, floor: int = 90, cap: int = 460) -> int:
    """Pixels a text column needs to show its longest value uncut (about 7.5 px a character at the
    table's font), between `floor` and `cap`."""
    longest = max((len(str(v)) for v in values if v is not None), default=0)
    return max(floor, min(cap, int(7.5 * longest) + 28))


def fitted(df: pd.DataFrame, *names: str) -> dict:
    """column_config of text columns sized to their longest value (fit_width)."""
    return {n: st.column_config.TextColumn(width=fit_width(df[n])) for n in names if n in df}


def pct_col(help: str | None = None):
    """A column of percentages (values already x100), one decimal everywhere."""
    return st.column_config.NumberColumn(format="%.1f%%", help=help)


def as_pct(v):
    """Fraction -> percent for tables (None stays None)."""
    return None if v is None else 100.0 * float(v)


PROBE_LABEL = "Probe distance to retrain (worst layer)"


def headline_cells(r: dict) -> dict:
    """The per-layer headline of one row (verdict.rows_vs_retrain) as table cells: the distance to
    retrain at the worst inner layer and the signed gap at every point (HEADLINE_COLUMNS says what
    they are)."""
    return {logic.DISTANCE_LABEL: logic.distance_text(r), logic.GAPS_LABEL: logic.gaps_text(r.get("gaps") or [])}


def headline_columns() -> dict:
    """The column_config of headline_cells' columns and of the labelled details next to them."""
    # a short header (the cells say the layer: "0.257 at block3 (+)"), so the Verdict after it stays in view
    return {logic.DISTANCE_LABEL: st.column_config.TextColumn("Distance to retrain", help=logic.DISTANCE_HELP),
            logic.GAPS_LABEL: st.column_config.TextColumn(help=logic.GAPS_HELP),
            PROBE_LABEL: st.column_config.TextColumn(
                help="The same for linear-probe recovery of forget-class test samples: the largest |gap| to "
                     "retrain's probe accuracy over the inner layers. (−): features destroyed beyond retrain."),
            logic.MEAN_LABEL: st.column_config.NumberColumn(
                format="%.3f", help="A detail, not the headline: the mean forget CKA to the original over the "
                                    "inner layers. A mean lets a layer that kept the class cancel one distorted "
                                    "past retrain; the distance to retrain is read at the worst layer.")}


def fmt_run(name: str) -> str:
    label = figures.display_name(name)
    return label + " (reference)" if name in logic.REFERENCE else label


# -- retrain-centred warnings and the history of one scenario ----------------------------------------

def run_warnings(rows: list[dict]) -> None:
    """One warning per damaging run (retain accuracy fell sharply, forget accuracy strays from
    retrain's, or calibration found no setting that reaches logit-level forgetting): these runs are
    not counted as forgetting and stay off every Pareto front."""
    for r in rows:
        if not r.get("damaging"):
            continue
        why = []
        if "retain damaged" in r["flags"]:
            why.append(f"retain accuracy fell to {logic.pct(r['retain_acc'])} (original "
                       f"{logic.pct(r.get('original_retain_acc'))})")
        if "forget off retrain" in r["flags"]:
            why.append(f"forget accuracy {logic.pct(r['forget_acc'])} is more than {verdict.FORGET_TOL:.0%} from "
                       f"retrain's {logic.pct(r.get('retrain_forget_acc'))}")
        if calibration.NOT_REACHED in r["flags"]:
            cal = r.get("calibration") or {}
            kept = (f"calibration kept the closest setting ({calibration.setting_text(cal.get('choice')) or '?'}), but "
                    if cal.get("used") else "")
            why.append(f"it {calibration.NOT_REACHED}: {kept}{calibration.missed(r)}")
        label = text.md(figures.display_name(r["name"]) + (f" · {r['settings']}" if r.get("settings") else ""))
        kind = ("damaging run" if "retain damaged" in r["flags"] else
                "off target" if "forget off retrain" in r["flags"] else calibration.NOT_REACHED)
        st.warning(f"**{label}: {kind}** — " + "; ".join(why) + ". Not counted as forgetting; kept off the "
                   "trade-off front.", icon=":material/warning:")


def calibration_note(rows: list[dict]) -> None:
    """A caption on how the methods' settings were found: how many were calibrated on this scenario
    and which of them did not reach logit-level forgetting (nothing when no run carries a block)."""
    methods = [r for r in rows if r.get("role") == "method" and r.get("calibration")]
    if not methods:
        return
    used = [r for r in methods if r["calibration"].get("used")]
    missed = [r for r in methods if calibration.NOT_REACHED in (r.get("flags") or [])]
    rule = ("learning rate × epochs: among the settings within "
            f"{verdict.FORGET_TOL:g} of retrain's forget accuracy on the forget training split, the highest retain "
            "accuracy")
    # why the others ran their recipe, once per distinct reason ("the teach recipe, tuned on this scenario ...")
    whys = sorted({str(r["calibration"].get("reason") or "").removeprefix("recipe as given (").removesuffix(")")
                   for r in methods if not r["calibration"].get("used")} - {""})
    if used:
        line = f"**Calibration**: {len(used)} of {len(methods)} methods ran a setting calibrated on this scenario ({rule})"
        line += (f"; the others ran their recipe as given ({'; '.join(whys)})." if len(used) < len(methods) else ".")
    else:
        line = (f"**Calibration**: every method ran its recipe as given" + (f" ({'; '.join(whys)})" if whys else "")
                + "; each run was still checked against retrain's forget accuracy.")
    if missed:
        line += (f" **{calibration.NOT_REACHED.capitalize()}**: "
                 + ", ".join(text.md(figures.display_name(r["name"])) for r in missed)
                 + " (forget accuracy not close enough to retrain's: marked and left off every front).")
    st.caption(line)


def calibration_grid(run: dict, name: str, key: str) -> None:
    """An expander with the grid a run's calibration tried: one row per setting, the kept one marked."""
    rows = calibration.grid_rows(run)
    if not rows:
        return
    with st.expander(f"Calibration grid of {text.md(figures.display_name(name))} ({len(rows)} settings)"):
        st.caption(text.md(calibration.detail(run)))
        st.dataframe(pd.DataFrame([{
            "Kept": "✓" if g["chosen"] else "", "lr": "?" if g["lr"] is None else f"{g['lr']:g}",
            "Epochs": g["epochs"],
            "Forget acc": as_pct(g["forget_acc"]), "Retain acc": as_pct(g["retain_acc"]),
            "Qualifies": g["qualifies"], "Stopped early": g["stopped"]} for g in rows]),
            hide_index=True, width="stretch", key=key,
            column_config={"Epochs": st.column_config.NumberColumn(format="%d"),
                           "Forget acc": pct_col("On the forget training split (never the test split)"),
                           "Retain acc": pct_col(),
                           "Qualifies": st.column_config.CheckboxColumn(
                               help="Forget accuracy within the tolerance of retrain's")})


def _history_rows(entries: list[dict]) -> list[dict]:
    out = []
    for h in entries:
        rows = {r["name"]: r for r in verdict.rows_vs_retrain(h["results"])}
        r = rows.get(h["name"]) or {}
        out.append({"": h.get("tag", ""), "Job": h["job"], "Settings": h["settings"],
                    "Forget acc": as_pct(r.get("forget_acc")), "Retain acc": as_pct(r.get("retain_acc")),
                    **headline_cells(r), "Verdict": r.get("verdict", ""), "Finished": logic.fmt_time(h.get("finished"))})
    return out


def scenario_history(job: dict, res: dict, limit: int = 12) -> None:
    """This run against the default settings and the previous run of the same scenario (same data,
    forget request, seed, model and training): a history of settings vs results, newest first."""
    label = next(iter(logic.method_runs(res)), None)
    if label is None:
        return
    items = data.all_results(data.jobs())
    hist = runinfo.scenario_history(items, res.get("config") or {}, label)
    dflt = runinfo.config_settings({**runinfo.defaults((res.get("config") or {}).get("preset")),
                                    "seed": (res.get("config") or {}).get("seed"),
                                    "method": (res["runs"][label].get("method") or facts.base_method(label)),
                                    "plugin": "ec" if label.endswith("+ec") else "none"})
    tagged = runinfo.tag_history(hist, job["id"], dflt)[:limit]
    name = text.md(figures.display_name(label))  # run names come from results files: plain text
    st.subheader(f"{name} on this scenario: settings vs results")
    default = next((h for h in tagged if "default settings" in h["tag"]), None)
    layer_strip(res, label, default, key=f"strip_{job['id']}")
    if len(tagged) <= 1:
        st.caption(f"No other {name} run of this scenario yet (default settings: {text.md(dflt)}). "
                   "Queue one from Launch and tune to compare.")
    rows = pd.DataFrame(_history_rows(tagged))
    st.dataframe(rows, hide_index=True, width="stretch", key=f"hist_{job['id']}",
                 column_config={"Forget acc": pct_col(), "Retain acc": pct_col(), **headline_columns(),
                                **fitted(rows, "Settings", "Verdict")})
    st.caption(f"Each run is read at its worst inner layer: the smaller the distance to retrain, the closer to the "
               f"model that never saw the forget set (0 = like retrain). Default settings: {text.md(dflt)}.")


STRIP_COLOURS = {"closer": "#d9f0d3", "further": "#fddbc7", "yes": "#d9f0d3", "no": "#fddbc7"}


def _strip_colour(cell) -> str:
    c = STRIP_COLOURS.get(str(cell).split(" ")[0])
    return f"background-color: {c}" if c else ""


def layer_strip(res: dict, label: str, default: dict | None, key: str) -> None:
    """Per supervision point: this run's gap to retrain, the default run's (a scenario_history entry
    with the default settings, or None), which is closer to retrain, and whether this run is within
    the tolerance there: a slider move is read where it acted."""
    name = figures.display_name(label)
    strip = logic.layer_strip(logic.layer_gaps(res, label),
                              logic.layer_gaps(default["results"], label) if default else None)
    rows = logic.strip_rows(strip, "This run", f"Default {name}" if default else None)
    st.dataframe(pd.DataFrame(rows).style.map(_strip_colour), hide_index=True, width="stretch", key=key)
    against = (f"the default {text.md(name)} is job {text.code(default['job'])}" if default else
               f"no run of the default {text.md(name)} on this scenario yet (queue one to compare layer by layer)")
    st.caption(f"Per supervision point, against retrain: {against}. “closer” = this run's gap to retrain is "
               f"smaller there than the default's. " + text.md(logic.tolerance_text(res)))
