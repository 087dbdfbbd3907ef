"""`leafbench claims`: the paper's claims tested over seeds on the synthetic testbed.

A client of the pipeline (like leafbench.sweep): it runs the conditions each claim needs as
ordinary experiments with overrides, reads their cached artifacts and tests each claim over
seeds and items (leafbench.claims.statistics), Holm-adjusted across the claims.
"""
