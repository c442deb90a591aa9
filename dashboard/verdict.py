"""Retrain as the zero point: signed differences to the retrained model, verdicts and warnings.

Forgetting is judged against the model retrained without the forget data (the gold standard),
layer by layer: at each supervision point the run's gap to retrain is read against that point's
tolerance (how far a second retrained model from another seed lands from the first; engine/results.py
`tolerances`). Closer to retrain is better. A run pushed further from the original than retrain is (lower CKA
than retrain's, a probe below retrain's, damaged accuracy) is distorted, not forgotten, and is
flagged as such rather than rewarded. Pure functions on plain dicts (no Streamlit, no torch).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from .figures import display_name
from . import calibration, facts, runinfo
from .text import md
from .logic import REFERENCE, excess, headline_rows, layer_gaps, num

ASSUMED_TOLERANCE = facts.ASSUMED_TOLERANCE["cka"]  # a point's tolerance where no second retrain was measured
# the engine's one rule at the logits (engine/results.py forgets / keeps_retain), the grids' too
RETAIN_TOL, FORGET_TOL = facts.RETAIN_TOL, facts.FORGET_TOL
EPS = 1e-12  # a gap equal to its tolerance is within it (engine/results.py layer_gaps reads it so too)
KEPT_SHARE = 0.5  # a layer that keeps more than half of the original-minus-retrain gap is "kept"


def to_retrain(per_layer: Mapping[str, Mapping | None], layers: Sequence[str]) -> dict[str, dict]:
    """{run: {layer: v - retrain's v}} for every run of a per-layer field; retrain itself is 0."""
    floor = per_layer.get("retrain") or {}
    return {n: excess(v, floor, layers) for n, v in per_layer.items()}


def layer_state(run_cka: float | None, retrain_cka: float | None, tol: float = ASSUMED_TOLERANCE,
                original_cka: float = 1.0) -> str | None:
    """One inner layer's forget-CKA to the original, read against retrain's at that layer and the
    layer's tolerance `tol` (reference noise: a second retrain's distance from the first):

    'kept'  the run keeps more than half of what separates the original from retrain (and more than
            the tolerance): the layer still computes much of what it did before unlearning;
    'past'  the run is further from the original than retrain by more than the tolerance: distorted;
    'near'  otherwise (like retrain). Meaningful for any retrain value: where retrain stays at 0.99,
            no run can be 'kept' there, because the layer barely separates the two models."""
    v, r = num(run_cka), num(retrain_cka)
    if v is None or r is None:
        return None
    d = v - r
    if d < -tol - EPS:
        return "past"
    if d > max(tol, KEPT_SHARE * (original_cka - r)) + EPS:
        return "kept"
    return "near"


def layer_states(results: Mapping, name: str) -> dict[str, str]:
    """{inner layer: 'kept' | 'near' | 'past'} of one run's forget CKA to the original vs retrain's,
    each against its layer's tolerance."""
    out = {}
    for g in layer_gaps(results, name):
        s = layer_state(g["value"], g["retrain"], g["tol"]) if g["inner"] else None
        if s is not None:
            out[g["point"]] = s
    return out


def flags(row: Mapping, original: Mapping | None, retrain: Mapping | None,
          states: Mapping[str, str] | None = None) -> list[str]:
    """Short warnings for one run (a headline row) against the reference rows, worst first.

    'retain damaged'  retain accuracy more than RETAIN_TOL below the original's;
    'forget off retrain'  forget accuracy more than FORGET_TOL away from retrain's (either way);
    'did not reach logit-level forgetting'  calibration found no setting near retrain's forget accuracy
        (the row carries the run's "calibration" block, see rows_vs_retrain);
    'past retrain'  an inner layer's CKA pushed beyond retrain's by more than its tolerance (distorted,
        not forgotten);
    'probe below retrain'  at some inner layer a linear probe recovers less than from retrain, by more
        than the probe's tolerance: features destroyed;
    'superficial'  an inner layer keeps most of the original (see layer_state);
    'above retrain'  otherwise, an inner layer keeps more of the original than retrain by more than its
        tolerance (less than 'superficial'). A run with none of the last four is within the tolerance of
        retrain at every inner layer."""
    if row.get("name") in REFERENCE:
        return []
    out = []
    if facts.keeps_retain(row.get("retain_acc"), (original or {}).get("retain_acc")) is False:
        out.append("retain damaged")
    if facts.forgets(row.get("forget_acc"), (retrain or {}).get("forget_acc")) is False:
        out.append("forget off retrain")
    if calibration.not_forgotten(row):
        out.append(calibration.NOT_REACHED)
    states = dict(states or {})
    if "past" in states.values():
        out.append("past retrain")
    if any(g["inner"] and g["within"] is False and g["gap"] < 0 for g in row.get("probe_gaps") or []):
        out.append("probe below retrain")
    if "kept" in states.values():
        out.append("superficial")
    elif any(g["inner"] and g["within"] is False and g["gap"] > 0 for g in row.get("gaps") or []):
        out.append("above retrain")
    return out


DAMAGING = ("retain damaged", "forget off retrain", calibration.NOT_REACHED)


def damaging(row_flags: Sequence[str]) -> bool:
    """A run that breaks the model, misses retrain's forget accuracy or found no calibrated setting that
    reaches it: warned about, never on a front."""
    return any(f in DAMAGING for f in row_flags)


def verdict(row_flags: Sequence[str], role: str = "method") -> str:
    """One word-group per run for tables: 'reference', 'closer to retrain' or the flags."""
    if role == "reference":
        return "reference"
    # a run that did not reach logit-level forgetting is off retrain's forget accuracy by that very check:
    # one phrase says both (the flags keep both for the counts and the warnings)
    shown = [f for f in row_flags if not (f == "forget off retrain" and calibration.NOT_REACHED in row_flags)]
    return ", ".join(shown) if shown else "close to retrain"


def rows_vs_retrain(results: Mapping) -> list[dict]:
    """headline_rows (the per-layer headline: distance to retrain at the worst inner layer, the gaps per
    point) with the retrain-centred fields added to every row: forget_delta (signed, run minus retrain;
    retrain is 0), retain_drop (original minus run), calibration (the run's block or None), setting (its
    calibration_text), layer_states, flags, damaging and verdict."""
    rows = headline_rows(results)
    by = {r["name"]: r for r in rows}
    orig, ret = by.get("original"), by.get("retrain")
    runs = results.get("runs") or {}

    def diff(a, b):
        a, b = num(a), num(b)
        return None if a is None or b is None else a - b

    for r in rows:
        r["forget_delta"] = diff(r["forget_acc"], (ret or {}).get("forget_acc"))
        r["retain_drop"] = diff((orig or {}).get("retain_acc"), r["retain_acc"])
        r["original_retain_acc"] = (orig or {}).get("retain_acc")  # what the warnings quote
        r["retrain_forget_acc"] = (ret or {}).get("forget_acc")
        r["calibration"] = calibration.block(runs.get(r["name"]))
        r["setting"] = calibration.calibration_text(r)
        r["layer_states"] = layer_states(results, r["name"])
        r["flags"] = flags(r, orig, ret, r["layer_states"])
        r["damaging"] = damaging(r["flags"])
        r["verdict"] = verdict(r["flags"], r["role"])
    return rows


def overview_sentence(rows: Sequence[Mapping], inner: Sequence[str]) -> str | None:
    """The Overview's one data-driven sentence, from rows_vs_retrain: how many methods reach
    retrain's forget accuracy, and of those, which keep inner layers (superficial), which are pushed
    past retrain (distorted) and which stay within the tolerance of retrain at every inner layer, judged
    layer by layer."""
    ret = next((r for r in rows if r["name"] == "retrain"), None)
    methods = [r for r in rows if r["role"] == "method"]
    if ret is None or ret.get("forget_acc") is None or not methods:
        return None
    looks = [r for r in methods if "forget off retrain" not in r["flags"] and calibration.NOT_REACHED not in r["flags"]
             and r["forget_acc"] is not None]
    groups = {
        "keep more than half of what separates the original from retrain at some inner layer (superficial)":
            [r for r in looks if "superficial" in r["flags"]],
        "are pushed past retrain by more than its tolerance at some inner layer (distorted, not forgotten)":
            [r for r in looks if "past retrain" in r["flags"] and "superficial" not in r["flags"]],
        "keep somewhat more of the original than retrain, beyond its tolerance, at some inner layer":
            [r for r in looks if "above retrain" in r["flags"] and "past retrain" not in r["flags"]],
        "stay within the tolerance of retrain at every inner layer (closest to retrain)":
            [r for r in looks if r["within"]],
    }
    parts = []
    for text, group in groups.items():
        names = ", ".join(md(display_name(r["name"])) for r in group)  # names come from results files
        parts.append(f"**{len(group)}** {text}" + (f": {names}" if names else ""))
    head = (f"**{len(looks)} of {len(methods)}** methods bring forget accuracy within {FORGET_TOL * 100:.0f} points "
            f"of retrain's ({100 * ret['forget_acc']:.1f}%)")
    if not looks:
        return head + "."
    return head + ". Of these, judged per inner layer (" + md(", ".join(inner)) + ") against retrain: " \
        + "; ".join(parts) + "."


def uninformative_layers(results: Mapping) -> list[str]:
    """Inner layers where retrain's forget CKA to the original is within the layer's tolerance of 1:
    there the layer barely separates a model that saw the forget set from one that did not."""
    return [g["point"] for g in layer_gaps(results, "retrain")
            if g["inner"] and g["retrain"] is not None and 1.0 - g["retrain"] <= g["tol"] + 1e-9]


def compare_rows(results: Mapping) -> list[dict]:
    """rows_vs_retrain plus what Compare needs to name a run and its scenario: the short settings,
    the scenario key (reference rows are shown once per scenario) and, for the reference rows,
    the time their training took when the results recorded it."""
    rows = rows_vs_retrain(results)
    key = runinfo.scenario_key(results.get("config"))
    base = results.get("base_seconds") or {}
    for r in rows:
        r["settings"] = runinfo.run_settings(results, r["name"])
        r["scenario_key"] = key
        if r["name"] in REFERENCE and r.get("seconds") is None:
            r["seconds"] = num(base.get(r["name"]))
    return rows


def one_reference_pair(rows: Sequence[Mapping]) -> list[Mapping]:
    """Drops the repeats of Original and Retrain: one pair per scenario (the first, i.e. newest)."""
    seen, out = set(), []
    for r in rows:
        if r.get("role") == "reference":
            k = (r.get("scenario_key"), r["name"])
            if k in seen:
                continue
            seen.add(k)
        out.append(r)
    return out


def live_flags(epoch: Mapping, original: Mapping | None, retrain: Mapping | None) -> list[str]:
    """Warnings for a running job from its newest epoch event against the scenario's reference rows:
    retain damage at any epoch; forget accuracy off retrain's only once the last epoch is reached
    (before that, forget accuracy is still on its way down)."""
    row = {"name": "run", "retain_acc": epoch.get("retain_acc"), "forget_acc": epoch.get("forget_acc")}
    out = [f for f in flags(row, original, retrain) if f in DAMAGING]
    last = num(epoch.get("epoch")) is not None and num(epoch.get("epoch")) == num(epoch.get("epochs"))
    return [f for f in out if f == "retain damaged" or last]


def scenario_references(items: Sequence[tuple[Mapping, Mapping]], cfg: Mapping | None) -> tuple[dict, dict] | None:
    """(original row, retrain row) of the newest results of the same scenario as `cfg`, or None."""
    key = runinfo.scenario_key(cfg)
    for _, res in items:
        if runinfo.scenario_key(res.get("config")) == key:
            rows = {r["name"]: r for r in headline_rows(res)}
            if "original" in rows and "retrain" in rows:
                return rows["original"], rows["retrain"]
    return None
