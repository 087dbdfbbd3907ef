"""Interpretability of confounder mining: attention mass on mined tokens and a Δ view."""
