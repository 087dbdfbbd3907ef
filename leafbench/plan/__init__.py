"""`leafbench plan EXP.yaml`: what an experiment will cost, before anything runs.

For each stage of the pipeline (mine, teach, distill, evaluate) the plan counts the sequences
and tokens it processes, the forward and backward FLOPs per model, the teacher cache on disk,
the peak memory per GPU and the GPU-hours on a named accelerator at a stated utilisation. It
reads model shapes (a shipped table for the paper's models, a local `config.json`, or the
testbed's settings) and never loads weights, computes a gradient or writes an artifact.

  architectures  the shapes of the paper's five models (their published config.json) and how
                 a local model's or the testbed's shapes are read
  accelerators   peak dense bf16 FLOP/s, memory and bandwidth of common GPUs (vendor figures)
  workload       how many items and tokens the training data holds (counted, or stated)
  costs          the formulas, one small function each
  estimate       the formulas applied to an experiment, stage by stage
  command        the `plan` sub-command
"""
