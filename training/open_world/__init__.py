"""The open-world decision (issue 18): is an answer a catalog SKU ("sku"), a known model in a
colourway the catalog may not have ("model"), or not a catalog model at all ("unknown")?

Two scores per answer, higher meaning "more like what the version was trained on":

- the *unknown* score (stage 1: is this a catalog model?),
- the *model* score (stage 2: is this a known colourway of the answered model?).

"unknown" when the first is below its threshold, else "model" when the second is below its
threshold, else "sku". The scores are pluggable (methods.py); the evidence of
docs/experiments/open_world.md chose the default, "energy+cos": stage 1's energy (logsumexp of
its logits) and its `fc` embedding's cosine to the nearest model centroid, each z-scored on the
validation photos and averaged; stage 2's `sku_hidden` embedding's cosine to the nearest SKU
centroid among the answered model's SKUs (scores.py). "msp" (stage 1's maximum probability, the
answer's joint probability) needs no embeddings, so it is also the fallback where a runner gives
none (int8 models quantized without them). The kNN methods ("knn1".."knn5") replace stage 2's
centroid by the k-th nearest training embedding of the answered model's SKUs (bank.py).

Thresholds are fitted per version on its validation photos (thresholds.py): of the correctly
classified ones, at most `budget` (default 5%) may lose their "sku" decision; stage 1's
threshold spends `split` of it (default half), stage 2's the rest on the photos stage 1 kept; a
stage whose share is under one photo never flags. The version keeps the fit in `open_world.json`
and `open_world.npz` (calibration.py); `calibrate` (fitting.py) runs it all, report.py has the
targets and the CLI rows, training/open_world_measure.py measures the decision on photos. No
TensorFlow at import: the functions that run a cascade import it when called.

The names other modules import are re-exported here."""

from shared.decisions import DECISIONS
from training.open_world.bank import BANK_PHOTOS, CENTROID_PHOTOS, CHUNK, Bank, fit_bank, unit
from training.open_world.calibration import BANK_FILE, CALIBRATION_FILE, OpenWorld
from training.open_world.evidence import Evidence
from training.open_world.fitting import calibrate
from training.open_world.methods import (
    DEFAULT_BUDGET,
    DEFAULT_METHOD,
    DEFAULT_SPLIT,
    FALLBACK_METHOD,
    MAX_K,
    METHODS,
    Method,
    check_budget,
    check_method,
)
from training.open_world.report import TARGETS, summary_rows, targets_met
from training.open_world.scores import decision_codes, raw_scores, with_combination, z_stats
from training.open_world.thresholds import fit_thresholds, photos_needed

__all__ = [
    "BANK_FILE",
    "BANK_PHOTOS",
    "CALIBRATION_FILE",
    "CENTROID_PHOTOS",
    "CHUNK",
    "DECISIONS",
    "DEFAULT_BUDGET",
    "DEFAULT_METHOD",
    "DEFAULT_SPLIT",
    "FALLBACK_METHOD",
    "MAX_K",
    "METHODS",
    "TARGETS",
    "Bank",
    "Evidence",
    "Method",
    "OpenWorld",
    "calibrate",
    "check_budget",
    "check_method",
    "decision_codes",
    "fit_bank",
    "fit_thresholds",
    "photos_needed",
    "raw_scores",
    "summary_rows",
    "targets_met",
    "unit",
    "with_combination",
    "z_stats",
]
