"""The Teach page's closing section: where superficial forgetting appears and where it does not,
from measured comparisons side by side (teach, digits, Fashion-MNIST with two models).

The numbers are in assets/where_it_appears.json, written by `python bench/bench_where.py` from the
comparisons' results.json files (nothing here is typed by hand). Per scenario: retrain's forget-set
CKA to the original at each inner layer (low = a model that never saw the class represents it
differently: the inner layers are class-specific), the probe recovery of the original and of
retrain, and the baselines' excess over retrain (their forget CKA minus retrain's, per inner layer:
above 0 = closer to the original than a model that never saw the class, i.e. kept inside).
`rows` and `reading` are pure; `render` draws the section with Streamlit.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path

ASSET = Path(__file__).resolve().parent.parent / "assets" / "where_it_appears.json"
# a median baseline excess at least this large at some inner layer reads as "appears": on teach it is
# 0.07-0.11, on digits at most 0.02 (README); retrain's own reseeding noise is a few hundredths
APPEARS = 0.05
SPECIFIC = 0.90  # retrain's CKA below this at an inner layer: that layer holds class-specific features

DATA_NAMES = {"teach": "teach (synthetic textures)", "digits": "digits (8×8 handwriting)",
              "fashion-mnist": "Fashion-MNIST (28×28 clothing)"}


def load(path: Path = ASSET) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, Mapping) and isinstance(doc.get("scenarios"), list) else None


def _fmt_layers(values: Mapping, signed: bool = False) -> str:
    return " / ".join(f"{v:+.3f}" if signed else f"{v:.3f}" for v in values.values())


def reading(sc: Mapping) -> str:
    """One line on why the effect does or does not show in this scenario, read layer by layer: the inner
    layer retrain moved furthest from the original, and the layer where the baselines kept the most."""
    kept_at, worst = max(sc["median_excess"].items(), key=lambda kv: kv[1]) if sc["median_excess"] else ("", 0.0)
    low_at, low = min(sc["retrain_cka"].items(), key=lambda kv: kv[1])
    if worst >= APPEARS:
        return (f"appears: retrain moved {low_at} away from the original (CKA {low:.2f}), the baselines stayed "
                f"{worst:+.2f} closer at {kept_at}")
    if low < SPECIFIC:
        return (f"{low_at} is class-specific (retrain {low:.2f}) but the baselines moved as far as retrain "
                f"(median excess at most {worst:+.3f})")
    return (f"does not appear: inner layers are generic, retrain keeps even {low_at} at {low:.2f} of the original, "
            f"so there is little for a baseline to keep (median excess at most {worst:+.3f})")


def rows(doc: Mapping) -> list[dict]:
    """One table row per scenario, in the file's order."""
    out = []
    for sc in doc["scenarios"]:
        layers = sc["layers"]
        kept = [n for n, e in sc["excess"].items()
                if sc["baselines_forgot"].get(n, True) and max(e.values(), default=0.0) >= APPEARS]
        out.append({"data set": DATA_NAMES.get(sc["dataset"], sc["dataset"]), "model": sc["arch"],
                    "inner layers": ", ".join(layers),
                    "retrain forget CKA per layer": _fmt_layers(sc["retrain_cka"]),
                    "probe original → retrain": f"{sc['probe_original']:.2f} → {sc['probe_retrain']:.2f}",
                    "median baseline excess per layer": _fmt_layers(sc["median_excess"], signed=True),
                    "baselines ≥ +0.05 inside": f"{len(kept)} of {len(sc['excess'])}",
                    "reading": reading(sc)})
    return out


def spread(sc: Mapping) -> str:
    """'+0.012 to +0.113': the range of every baseline's excess over every inner layer."""
    vals = [v for e in sc["excess"].values() for v in e.values()]
    return f"{min(vals):+.3f} to {max(vals):+.3f}" if vals else "n/a"


def render() -> None:
    import streamlit as st

    from dashboard import text

    doc = load()
    st.subheader("Where it appears, and where it does not")
    if doc is None:
        st.caption("No measurements yet: `python bench/bench_where.py` writes assets/where_it_appears.json.")
        return
    st.markdown(
        "The same comparison on real and synthetic data, with the same yardstick: retrain's forget CKA to the "
        "original at each inner layer (how differently a model that never saw the class represents it) and each "
        "baseline's **excess** over retrain (its forget CKA minus retrain's; above 0 = kept inside). Superficial "
        "forgetting needs inner layers that are **class-specific**: only then does retraining change them, and only "
        "then can a method that hides the class at the output leave something behind. Where inner layers hold "
        "**generic** features (strokes, edges, textures that every class uses), a model that never saw the class "
        "builds them anyway and there is nothing to keep.")
    table = rows(doc)
    # the reading is a sentence: as a table cell it was cut at 1400 px, so it is listed under the table
    st.dataframe([{k: v for k, v in r.items() if k != "reading"} for r in table], hide_index=True, width="stretch")
    st.markdown("\n".join(f"- **{r['data set']}, {r['model']}**: {r['reading']}." for r in table))
    med = {sc["name"]: statistics.median(max(e.values(), default=0.0) for e in sc["excess"].values())
           for sc in doc["scenarios"] if sc["excess"]}
    note = f"; {text.md(doc['note'])}" if doc.get("note") else ""  # a row measured otherwise than the command says
    st.caption(f"Measured {doc['measured']} (`{doc['command']}`{note}); forget {', '.join(sorted({sc['forget'] for sc in doc['scenarios']}))}, "
               "seed 0, each preset's default scenario. Per scenario, the range of the baselines' excess over all inner "
               "layers: " + "; ".join(f"{sc['name']} {spread(sc)}" for sc in doc["scenarios"])
               + ". Median over baselines of their largest inner excess: "
               + "; ".join(f"{k} {v:+.3f}" for k, v in med.items()) + ". An excess counts only beyond what reseeding "
               "alone changes: retrain starts from its own seed, the baselines from the original, so part of every "
               "excess is training noise (the Layers page's 'Original, other seed' row). With the narrow ResNet most "
               "of it is (README: where superficial forgetting appears).")
