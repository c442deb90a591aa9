"""Per-scenario calibration of a method run, as the pages show it (results.json
`runs[label]["calibration"]`, docs: issue 9). Pure functions on plain dicts (no Streamlit).

Before a comparison's method run, the engine tries a small grid over its learning rate x epochs and
keeps, among the settings whose forget accuracy on the forget training split is within the tolerance
of retrain's, the one with the highest retain accuracy; when none qualifies it keeps the closest and
marks the run `reached: false`. Reference rows and old results have no block: "not calibrated".
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from .facts import cpu_presets

NOT_REACHED = "did not reach logit-level forgetting"
MODES = ("auto", "on", "off")
# config `calibrate: auto` calibrates on these CPU presets (engine/calibrate.py resolve_mode); the CIFAR
# presets' published recipes stand
AUTO_ON_PRESETS = cpu_presets()  # the CPU-cheap data sets' presets (engine/data/sets)
MODE_HELP = ("Calibration tries a small grid of learning rates × epochs on this scenario and keeps, among the "
             "settings whose forget accuracy on the forget training split is within 0.05 of retrain's, the one "
             f"with the highest retain accuracy (a run where none qualifies is marked '{NOT_REACHED}').  \n"
             f"**auto**: on for a comparison on the CPU presets ({', '.join(AUTO_ON_PRESETS)}) wherever the "
             "scenario is not the one the recipes were tuned on; a single run reuses a comparison's choice when "
             "there is one. Off for the CIFAR presets (published recipes) and where you set the method's learning "
             "rate or epochs yourself.  \n**on** / **off**: always / never. Every run, calibrated or not, is "
             "checked against retrain's forget accuracy and marked when it misses.")


def resolved_mode(calibrate: str | None, preset: str | None) -> str:
    """'on' or 'off': whether config `calibrate` may calibrate on a preset at all."""
    if calibrate in ("on", "off"):
        return calibrate
    return "on" if preset in AUTO_ON_PRESETS else "off"


def mode_label(mode: str, preset: str | None) -> str:
    """The Launch form's option text (a single run): 'auto (calibrated if known)',
    'auto (off for cifar10)', 'on', 'off'."""
    if mode != "auto":
        return mode
    return "auto (calibrated if known)" if resolved_mode(mode, preset) == "on" \
        else f"auto (off for {preset})"


def block(run: Mapping | None) -> dict | None:
    """The calibration block of a run entry (or of a row that carries it), or None."""
    cal = (run or {}).get("calibration")
    return dict(cal) if isinstance(cal, Mapping) else None


def _num(v) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _g(v) -> str:
    f = _num(v)
    return "?" if f is None else f"{f:g}"


def setting_text(setting: Mapping | None) -> str:
    """{"lr": 0.1, "epochs": 4} -> 'lr 0.1, 4 ep' (any other knob as 'name value')."""
    setting = setting if isinstance(setting, Mapping) else {}
    parts = []
    if "lr" in setting:
        parts.append(f"lr {_g(setting['lr'])}")
    if "epochs" in setting:
        parts.append(f"{_g(setting['epochs'])} ep")
    parts += [f"{k} {_g(v)}" for k, v in setting.items() if k not in ("lr", "epochs")]
    return ", ".join(parts)


def calibration_text(run: Mapping | None) -> str:
    """'calibrated: lr 0.1, 4 ep (recipe lr 0.3, 10 ep)', 'recipe as given', or '' without a block."""
    cal = block(run)
    if cal is None:
        return ""
    if not cal.get("used"):
        return "recipe as given" + (", NOT forgotten" if cal.get("reached") is False else "")
    choice, recipe = setting_text(cal.get("choice")), setting_text(cal.get("recipe"))
    if not choice:
        return "calibrated"
    if recipe and recipe == choice:
        return f"calibrated: {choice} (= recipe)"
    return f"calibrated: {choice}" + (f" (recipe {recipe})" if recipe else "")


def not_forgotten(run: Mapping | None) -> bool:
    """True when the run was checked against retrain and missed: calibration found no setting within
    the tolerance of retrain's forget accuracy, or the recipe as given did not get there."""
    cal = block(run)
    return bool(cal and cal.get("reached") is False)


def detail(run: Mapping | None) -> str:
    """One sentence for the job page: which setting ran, why, and how it was found."""
    cal = block(run)
    if cal is None:
        return "Not calibrated: these results predate calibration (the recipe ran as given)."
    recipe = setting_text(cal.get("recipe"))
    if not cal.get("used"):
        why = cal.get("reason") or (f"calibration {cal['mode']}" if cal.get("mode") else "")
        return "Recipe as given" + (f" ({recipe})" if recipe else "") + (f": {why}." if why else ".")
    if cal.get("source") == "cached":
        how = "reused from an earlier comparison of this scenario"
    else:
        seconds = _num(cal.get("seconds"))
        how = f"searched {len(grid_rows(run))} settings" + (f" in {seconds:.1f} s" if seconds is not None else "")
    text = f"Calibrated setting {setting_text(cal.get('choice')) or '?'}" + (f" (recipe {recipe})" if recipe else "")
    text += f", {how}" + (f": {cal['reason']}." if cal.get("reason") else ".")
    if not_forgotten(run):
        text += f" This run {NOT_REACHED}" + ("." if cal.get("reason") else f": {missed(run)}.")
    return text


def missed(run: Mapping | None) -> str:
    """Why a run is marked: 'no setting tried came within 0.05 of retrain's forget accuracy (0.0%) ...'
    (calibrated), or 'the recipe's forget accuracy (64.0%) is not within 0.05 of retrain's ...'."""
    cal = block(run) or {}
    target = cal.get("target")
    target = target if isinstance(target, Mapping) else {}
    tol, acc = _num(target.get("tolerance")), _num(target.get("forget_acc"))
    within = f"within {'the tolerance' if tol is None else f'{tol:g}'} of retrain's forget accuracy" + (
        f" ({100 * acc:.1f}%)" if acc is not None else "")
    if not cal.get("used"):
        own = _num(cal.get("forget_acc"))
        return (f"the setting as given left forget accuracy at {'?' if own is None else f'{100 * own:.1f}%'}, "
                f"not {within} on the forget training split")
    return f"no setting tried came {within} on the forget training split"


def grid_rows(run: Mapping | None) -> list[dict]:
    """The grid tried, one row per candidate: lr, epochs, forget acc, retain acc, qualifies, chosen,
    and why it stopped early ('' when it ran to the end)."""
    cal = block(run) or {}
    grid = cal.get("grid")
    choice = cal.get("choice") if isinstance(cal.get("choice"), Mapping) else {}
    rows = []
    for g in grid if isinstance(grid, list) else []:
        if not isinstance(g, Mapping):
            continue
        chosen = bool(choice) and all(_num(g.get(k)) == _num(v) for k, v in choice.items())
        rows.append({"lr": _num(g.get("lr")), "epochs": _num(g.get("epochs")),
                     "forget_acc": _num(g.get("forget_acc")), "retain_acc": _num(g.get("retain_acc")),
                     "qualifies": bool(g.get("qualifies")), "chosen": chosen, "stopped": str(g.get("stopped") or "")})
    return rows
