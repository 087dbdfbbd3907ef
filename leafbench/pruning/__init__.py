"""Span pruning: marked tokens become counterfactual instructions (stage.py), and the paper's
optional validation of them (validation.py).

Other stages use pruning only through the names below: the preliminary experiment removes
mined tokens exactly as pruning does and grades answers with the same checkers.
"""

from leafbench.pruning.spans import prune_sample
from leafbench.pruning.validation import CHECKERS, greedy_answers

__all__ = ["CHECKERS", "greedy_answers", "prune_sample"]
