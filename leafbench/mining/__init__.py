"""Confounder mining: gradient saliency of teacher and student, Δ, thresholds, baselines.

Other stages use mining only through the names below (a lint contract forbids importing this
package's modules from another stage): pruning and interpretation apply the same threshold and
score detection the same way mining defines them.
"""

from leafbench.mining.baselines import BASELINES
from leafbench.mining.detection import precision_recall, token_in_spans
from leafbench.mining.threshold import mark_confounders

__all__ = ["BASELINES", "mark_confounders", "precision_recall", "token_in_spans"]
