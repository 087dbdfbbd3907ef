"""Settings of the embedded default testbed ("distracted arithmetic" and its two tiny models).

A module of its own so that the testbed's generator can grow settings without touching the
experiment schema in leafbench.config, which embeds them as `synthetic:`.
"""

from __future__ import annotations

from typing import Annotated, Literal

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

    The harder variants: `n_distractors` clauses per problem (the first follows the split's
    rule, the others are unrelated to the answer); `distractor_form` "fact" (today's irrelevant
    facts), "quantity" (another person holding the same items: the operand sentences' own
    shape), "unit" (a measurement of the items) or "mixed" (a form per clause);
    `distractor_position` where the clauses go ("any" of the slots around the operand
    sentences, or always first / between / last); `filler_sentences` number-free sentences
    inserted anywhere before the question, for longer contexts.
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
    # Harder variants of the generator (leafbench.bench.testbed_map sweeps them). At their
    # defaults the corpus is today's byte for byte and the testbed's cache key is unchanged
    # (`GENERATOR_DEFAULTS`, leafbench.synthetic.testbed.testbed_key).
    n_distractors: PositiveInt = 1  # distractor clauses per distracted problem
    distractor_form: Literal["fact", "quantity", "unit", "mixed"] = "fact"
    distractor_position: Literal["any", "first", "between", "last"] = "any"
    filler_sentences: Annotated[int, Field(ge=0)] = 0  # number-free sentences: longer contexts


# The generator settings added after the first testbeds were cached, with the values that
# reproduce those testbeds: left out of the cache key while at these values.
GENERATOR_DEFAULTS: dict[str, object] = {
    "n_distractors": 1, "distractor_form": "fact", "distractor_position": "any",
    "filler_sentences": 0,
}
