"""Settings of the embedded default testbed ("distracted arithmetic" and its two tiny models).

A module of its own so that the testbed's generator can grow settings without touching the
experiment schema in leafbench.config, which embeds them as `synthetic:`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from leafbench.schema import PositiveInt, Strict, Unit


class TinyModelConfig(Strict):
    """Shape and pretraining budget of one tiny Llama-architecture model of the testbed."""

    layers: PositiveInt = 2
    hidden: PositiveInt = 128
    heads: PositiveInt = 4
    steps: PositiveInt = 500
    batch_size: PositiveInt = 32
    lr: Annotated[float, Field(gt=0.0)] = 3e-3


class SyntheticConfig(Strict):
    """The "distracted arithmetic" generator and its two pretrained models.

    The teacher sees distractors whose number is unrelated to the answer; the student sees
    distractors whose number equals the answer with probability `spurious_correlation`, so it
    learns to copy the distractor instead of adding. The test set is always uncorrelated.
    The `train` split (mining and distillation) has d = answer with probability
    `train_correlation`: 0 by default, so its distractors are the confounders LeaF should
    teach the student to ignore; 1 reproduces the student's own biased world.
    """

    seed: int = 0
    max_operand: PositiveInt = 9
    n_pretrain: PositiveInt = 6000
    n_train: PositiveInt = 256
    n_test: PositiveInt = 200
    n_validation: PositiveInt = 200  # tuning split (sweeps); held out of every other split
    spurious_correlation: Unit = 1.0
    train_correlation: Unit = 0.0
    vocab_size: PositiveInt = 600
    teacher: TinyModelConfig = TinyModelConfig()
    student: TinyModelConfig = TinyModelConfig(layers=2, hidden=64, heads=2, steps=600)
