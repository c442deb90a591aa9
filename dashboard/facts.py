"""The engine's facts, as the pages read them: the one dashboard module that, besides data.py (the
job API), imports the engine, and only its facade engine.api.

Methods, labels and colours, architectures and class names come from engine/catalog.py; presets,
validation and the one deep merge from engine/config.py; the results format (arrays.npz key names,
the headline, the Pareto front) from engine/results.py. Views and dashboard/logic.py reach the
engine only through here. Nothing here imports torch or Optuna (the sweep readers load Optuna on
first use).
"""
from __future__ import annotations

from engine.api import (CONTRASTIVE_KNOBS, DATASET_CLASSES, EC_SECTION_KNOBS, MAX_UPLOAD_MB, METHOD_NAMES,
                        METHODS, PRESETS, SUPERVISION_POINTS, ConfigError, DatabaseUnavailable, base_method,
                        class_names, cpu_presets, deep_merge, discover_studies, display_name, home, make_config, method_knobs,
                        params_to_overrides, preset_notes, reads_ec, results, study_table, sweep_format_version, swept_run,
                        validate)

# the results format (engine/results.py)
SCHEMA_VERSION = results.SCHEMA_VERSION
REFERENCE, NOISE_RUN, RETRAIN_NOISE_RUN = results.REFERENCE, results.NOISE_RUN, results.RETRAIN_NOISE_RUN
FEAT, UMAP, EPOCH_UMAP = results.FEAT, results.UMAP, results.EPOCH_UMAP
EMBED_LABELS, EMBED_IS_FORGET = results.EMBED_LABELS, results.EMBED_IS_FORGET
conf_key, umap_key, epoch_umap_key, embed_file = results.conf_key, results.umap_key, results.epoch_umap_key, \
    results.embed_file
parse_key, runs_of, epochs_of = results.parse_key, results.runs_of, results.epochs_of
num, mean_over, inner_layers = results.num, results.mean_over, results.inner_layers
run_names, run_summary, summary, pareto = results.run_names, results.run_summary, results.summary, results.pareto
# the per-layer headline: gaps to retrain per supervision point, their tolerances, the worst inner layer
tolerances, layer_gaps, distance, gaps_text = results.tolerances, results.layer_gaps, results.distance, \
    results.gaps_text
ASSUMED_TOLERANCE = results.ASSUMED_TOLERANCE  # {"cka", "probe"}: where no second retrain was measured
FORGET_TOL, RETAIN_TOL = results.FORGET_TOL, results.RETAIN_TOL  # the one rule at the logits
forgets, keeps_retain = results.forgets, results.keeps_retain
COMPUTED_WITH, computed_text = results.COMPUTED_WITH, results.computed_text

__all__ = ["CONTRASTIVE_KNOBS", "DATASET_CLASSES", "EC_SECTION_KNOBS", "MAX_UPLOAD_MB", "METHOD_NAMES", "METHODS",
           "PRESETS", "SUPERVISION_POINTS", "ConfigError", "DatabaseUnavailable", "base_method", "class_names",
           "cpu_presets", "preset_notes", "deep_merge", "discover_studies", "display_name", "home", "make_config", "method_knobs", "params_to_overrides", "reads_ec",
           "study_table", "sweep_format_version", "swept_run", "validate", "SCHEMA_VERSION", "REFERENCE", "NOISE_RUN", "FEAT", "UMAP", "EPOCH_UMAP",
           "EMBED_LABELS", "EMBED_IS_FORGET", "conf_key", "umap_key", "epoch_umap_key", "embed_file", "parse_key",
           "runs_of", "epochs_of", "num", "mean_over", "inner_layers", "run_names", "run_summary", "summary",
           "pareto", "ASSUMED_TOLERANCE", "FORGET_TOL", "RETAIN_TOL", "forgets", "keeps_retain", "COMPUTED_WITH", "computed_text", "tolerances", "layer_gaps", "distance", "gaps_text"]
