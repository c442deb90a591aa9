"""Retrain as the zero point: signed differences to the retrained model, verdicts and warnings.

Forgetting is judged against the model retrained without the forget data (the gold standard).
Closer to retrain is better. A run pushed further from the original than retrain is (lower CKA
than retrain's, a probe below retrain's, damaged accuracy) is distorted, not forgotten, and is
flagged as such rather than rewarded. Pure functions on plain dicts (no Streamlit, no torch).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from .figures import display_name
from . import calibration, runinfo
from .text import md
from .logic import REFERENCE, excess, headline_rows, inner_layers, num

CKA_MARGIN = 0.02  # a per-layer CKA difference to retrain below this is "like retrain"
PROBE_MARGIN = 0.05  # probe recovery below retrain's by more than this = information destroyed
RETAIN_DROP = 0.05  # retain accuracy more than 5 points below the original's = damaging
FORGET_TOL = 0.05  # forget accuracy within 5 points of retrain's (the sweeps' feasibility rule)
KEPT_SHARE = 0.5  # a layer that keeps more than half of the original-minus-retrain gap is "kept"


def to_retrain(per_layer: Mapping[str, Mapping | None], layers: Sequence[str]) -> dict[str, dict]:
    """{run: {layer: v - retrain's v}} for every run of a per-layer field; retrain itself is 0."""
    floor = per_layer.get("retrain") or {}
    return {n: excess(v, floor, layers) for n, v in per_layer.items()}


def layer_state(run_cka: float | None, retrain_cka: float | None, original_cka: float = 1.0) -> str | None:
    """One inner layer's forget-CKA to the original, read against retrain's at that layer:

    'kept'  the run keeps more than half of what separates the original from retrain (and more than
            the margin): the layer still computes much of what it did before unlearning;
    'past'  the run is further from the original than retrain by more than the margin: distorted;
    'near'  otherwise (like retrain). Meaningful for any retrain value: where retrain stays at 0.99,
            no run can be 'kept' there, because the layer barely separates the two models."""
    v, r = num(run_cka), num(retrain_cka)
    if v is None or r is None:
        return None
    d = v - r
    if d < -CKA_MARGIN:
        return "past"
    if d > max(CKA_MARGIN, KEPT_SHARE * (original_cka - r)):
        return "kept"
    return "near"


def layer_states(results: Mapping, name: str) -> dict[str, str]:
    """{inner layer: 'kept' | 'near' | 'past'} of one run's forget CKA to the original vs retrain's."""
    runs = results.get("runs") or {}
    inner = inner_layers(results.get("layers") or [])
    get = lambda n: ((runs.get(n) or {}).get("cka_vs_original") or {}).get("forget") or {}  # noqa: E731
    run, ret = get(name), get("retrain")
    out = {}
    for layer in inner:
        s = layer_state(run.get(layer), ret.get(layer))
        if s is not None:
            out[layer] = s
    return out


def flags(row: Mapping, original: Mapping | None, retrain: Mapping | None,
          states: Mapping[str, str] | None = None) -> list[str]:
    """Short warnings for one run (a headline row) against the reference rows, worst first.

    'retain damaged'  retain accuracy more than RETAIN_DROP below the original's;
    'forget off retrain'  forget accuracy more than FORGET_TOL away from retrain's (either way);
    'did not reach logit-level forgetting'  calibration found no setting near retrain's forget accuracy
        (the row carries the run's "calibration" block, see rows_vs_retrain);
    'past retrain'  inner CKA pushed beyond retrain's (distorted, not forgotten);
    'probe below retrain'  a linear probe recovers less than from retrain: features destroyed;
    'superficial'  an inner layer keeps most of the original (see layer_state)."""
    if row.get("name") in REFERENCE:
        return []
    out = []
    ra, ora = num(row.get("retain_acc")), num((original or {}).get("retain_acc"))
    if ra is not None and ora is not None and ora - ra > RETAIN_DROP:
        out.append("retain damaged")
    fa, rfa = num(row.get("forget_acc")), num((retrain or {}).get("forget_acc"))
    if fa is not None and rfa is not None and abs(fa - rfa) > FORGET_TOL:
        out.append("forget off retrain")
    if calibration.not_forgotten(row):
        out.append(calibration.NOT_REACHED)
    states = dict(states or {})
    if "past" in states.values():
        out.append("past retrain")
    pm, rpm = num(row.get("probe_mid")), num((retrain or {}).get("probe_mid"))
    if pm is not None and rpm is not None and rpm - pm > PROBE_MARGIN:
        out.append("probe below retrain")
    if "kept" in states.values():
        out.append("superficial")
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
    return ", ".join(row_flags) if row_flags else "close to retrain"


def rows_vs_retrain(results: Mapping) -> list[dict]:
    """headline_rows with the retrain-centred fields added to every row:
    cka_delta / probe_delta / forget_delta (signed, run minus retrain; retrain is 0), retain_drop
    (original minus run), cka_distance (mean |per-layer CKA difference| over the inner layers),
    calibration (the run's block or None), setting (its calibration_text), layer_states, flags,
    damaging and verdict."""
    rows = headline_rows(results)
    by = {r["name"]: r for r in rows}
    orig, ret = by.get("original"), by.get("retrain")
    runs = results.get("runs") or {}
    inner = inner_layers(results.get("layers") or [])
    floor = ((runs.get("retrain") or {}).get("cka_vs_original") or {}).get("forget")

    def diff(a, b):
        a, b = num(a), num(b)
        return None if a is None or b is None else a - b

    for r in rows:
        r["cka_delta"] = diff(r["cka_mid"], (ret or {}).get("cka_mid"))
        r["probe_delta"] = diff(r["probe_mid"], (ret or {}).get("probe_mid"))
        r["forget_delta"] = diff(r["forget_acc"], (ret or {}).get("forget_acc"))
        r["retain_drop"] = diff((orig or {}).get("retain_acc"), r["retain_acc"])
        r["original_retain_acc"] = (orig or {}).get("retain_acc")  # what the warnings quote
        r["retrain_forget_acc"] = (ret or {}).get("forget_acc")
        d = excess(((runs.get(r["name"]) or {}).get("cka_vs_original") or {}).get("forget"), floor, inner)
        r["cka_distance"] = sum(abs(v) for v in d.values()) / len(d) if d else None
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
    past retrain (distorted) and which stay close to it, judged layer by layer."""
    ret = next((r for r in rows if r["name"] == "retrain"), None)
    methods = [r for r in rows if r["role"] == "method"]
    if ret is None or ret.get("forget_acc") is None or not methods:
        return None
    looks = [r for r in methods if "forget off retrain" not in r["flags"] and calibration.NOT_REACHED not in r["flags"]
             and r["forget_acc"] is not None]
    groups = {
        "keep more than half of what separates the original from retrain at some inner layer (superficial)":
            [r for r in looks if "kept" in r["layer_states"].values()],
        f"are pushed past retrain by more than {CKA_MARGIN:.2f} CKA at some inner layer (distorted, not forgotten)":
            [r for r in looks if "past" in r["layer_states"].values() and "kept" not in r["layer_states"].values()],
        f"stay within {CKA_MARGIN:.2f} of retrain's CKA at every inner layer (closest to retrain)":
            [r for r in looks if r["layer_states"] and set(r["layer_states"].values()) == {"near"}],
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


def uninformative_layers(results: Mapping, margin: float = CKA_MARGIN) -> list[str]:
    """Inner layers where retrain's forget CKA to the original is within `margin` of 1: there the
    layer barely separates a model that saw the forget set from one that did not."""
    runs = results.get("runs") or {}
    ret = ((runs.get("retrain") or {}).get("cka_vs_original") or {}).get("forget") or {}
    out = []
    for layer in inner_layers(results.get("layers") or []):
        v = num(ret.get(layer))
        if v is not None and 1.0 - v <= margin + 1e-9:
            out.append(layer)
    return out


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
