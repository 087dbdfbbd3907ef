"""The embedded default testbed: "distracted arithmetic" data and two tiny pretrained models.

`build_testbed(cfg, cache_root)` returns a cached `Testbed` (paths of the tokenizer, teacher,
student and the train/test JSONL files); `generate_corpus(cfg)` gives the records alone.
"""

from leafbench.synthetic.corpus import (
    extract_answer,
    generate_corpus,
    generate_split,
    make_problem,
)
from leafbench.synthetic.testbed import Testbed, build_testbed, testbed_key
from leafbench.synthetic.tokenizer import encode_pair, train_tokenizer

__all__ = [
    "Testbed",
    "build_testbed",
    "encode_pair",
    "extract_answer",
    "generate_corpus",
    "generate_split",
    "make_problem",
    "testbed_key",
    "train_tokenizer",
]
