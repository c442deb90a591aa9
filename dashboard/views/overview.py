"""Overview: the scenario and the headline, logit-level next to representation-level forgetting."""
import pandas as pd
import streamlit as st

from dashboard import data, figures, logic, text, widgets

st.title("Overview")

ctx = widgets.require_results()
if ctx is None:
    st.stop()
job, res = ctx
s = res.get("scenario") or {}
layers = list(res.get("layers") or [])
inner = logic.inner_layers(layers)

cols = st.columns(5)
cols[0].metric("Data set", str(s.get("dataset", "?")))
cols[1].metric("Model", str(s.get("arch", "?")))
cols[2].metric("Forget request", logic.forget_label(s))
cols[3].metric("Seed", str(s.get("seed", "?")))
cols[4].metric("Device", str(s.get("device", "?")))
st.caption(f"Job `{job['id']}` ({job.get('kind')}) · {s.get('n_train', '?')} training samples: "
           f"{s.get('n_forget', '?')} to forget, {s.get('n_retain', '?')} to retain · {s.get('n_test', '?')} test samples "
           f"· finished {logic.fmt_time(data.jt(job, 'finished'))}")

st.info("**Superficial forgetting**: a method can bring forget accuracy to retrain's level at the logits while "
        "its intermediate layers still hold the forgotten data: their features stay similar to the original "
        "model's (high CKA) and a linear probe still recovers the class.", icon=":material/visibility:")

rows = logic.headline_rows(res)
ref = {r["name"]: r for r in rows}
table = pd.DataFrame([{
    "Run": widgets.fmt_run(r["name"]),
    "Row": "reference" if r["role"] == "reference" else "method",
    "Forget acc": widgets.as_pct(r["forget_acc"]), "Retain acc": widgets.as_pct(r["retain_acc"]),
    "Test acc": widgets.as_pct(r["test_acc"]), "MIA efficacy": widgets.as_pct(r["mia"]),
    "Forget CKA (inner)": r["cka_mid"], "CKA above retrain": r["cka_excess"],
    "Probe recovery (inner)": widgets.as_pct(r["probe_mid"]),
} for r in rows])
pct = widgets.pct_col()
st.subheader("Headline")
st.dataframe(
    table, hide_index=True, width="stretch", height=38 + 35 * len(table),
    column_config={
        "Run": st.column_config.TextColumn(pinned=True),
        "Row": st.column_config.TextColumn(help="Original and Retrain are reference rows, not unlearning methods: "
                                                "the starting point and the target."),
        "Forget acc": widgets.pct_col("Logit level: accuracy on the forget set"),
        "Retain acc": pct, "Test acc": pct,
        "MIA efficacy": widgets.pct_col("Share of forget samples a confidence attack calls non-members "
                                        "(higher = looks more forgotten)"),
        "Forget CKA (inner)": st.column_config.NumberColumn(
            format="%.2f", help=f"Representation level: mean CKA to the original on the forget set over the "
                                f"intermediate supervision points ({text.md(', '.join(inner))}). 1 = unchanged."),
        "CKA above retrain": st.column_config.NumberColumn(
            format="%+.2f", help="Inner forget CKA minus the retrained model's: what is left beyond the target."),
        "Probe recovery (inner)": widgets.pct_col(
            f"Linear-probe accuracy on forget-class test samples, mean over {text.md(', '.join(inner))}"),
    })
st.caption(f"Logit level: forget / retain / test accuracy and MIA. Representation level: the intermediate "
           f"supervision points {text.md(', '.join(inner))} (all but the last, {text.md(layers[-1]) if layers else '?'}). "
           "Reference rows: **Original** (before unlearning) and **Retrain** (trained without the forget set, the "
           "gold standard).")

# One data-driven sentence on the gap.
retr = ref.get("retrain") or {}
methods = [r for r in rows if r["role"] == "method"]
if retr.get("forget_acc") is not None and retr.get("cka_mid") is not None and methods:
    looks = [r for r in methods if r["forget_acc"] is not None and abs(r["forget_acc"] - retr["forget_acc"]) <= 0.05]
    deep = [r for r in looks if r["cka_mid"] is not None and r["cka_mid"] - retr["cka_mid"] > 0.1]
    st.markdown(f"**{len(looks)} of {len(methods)}** methods bring forget accuracy within 5 points of retrain's "
                f"({logic.pct(retr['forget_acc'])}); **{len(deep)}** of them keep inner-layer CKA more than 0.10 above "
                f"retrain's ({logic.dec(retr['cka_mid'])})"
                + (": " + text.md(", ".join(figures.display_name(r["name"]) for r in deep)) + "." if deep else "."))

widgets.show(figures.forgetting_bars(rows), key="ov_bars")

recent_failed = [j for j in data.jobs()[:20] if j.get("state") == "failed"][:3]
for j in recent_failed:
    st.warning(f"Job {text.code(j['id'])} ({text.md(logic.job_label(j))}) failed: {text.md(j.get('error') or 'no message')}",
               icon=":material/error:")
