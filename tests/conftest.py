"""Shared fixtures: tiny locally built models and paths to the shared benchmark data.

Nothing here touches the network: the tokenizer is a byte-level BPE trained in milliseconds on
a few sentences, the models are randomly initialised Llama-architecture networks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LEAFBENCH_PROGRESS", "0")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SENTENCES = [
    "Tom has 3 apples. Anna gives him 4 more. Her brother is 7 years old.",
    "How many apples does Tom have now? 3 + 4 = 7. The answer is 7.",
    "The shop is on floor 5. Mia buys 2 pens and 6 pencils.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many in May.",
]


# The benchmark data folder: LEAFBENCH_DATA_DIR, else ../shared/data beside the repository.
# Tests read it when present and fall back to small fixtures of their own; nothing from it is
# ever copied into the project.
SHARED_DATA = Path(
    os.environ.get("LEAFBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def shared_data_dir() -> Path | None:
    """SHARED_DATA when it is present."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def build_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|eos|>",
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer, out: Path, hidden: int, layers: int, seed: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """(teacher_dir, student_dir) sharing one tokenizer; random weights, built in seconds."""
    root = tmp_path_factory.mktemp("tiny_models")
    tok = build_tokenizer()
    teacher = build_model(tok, root / "teacher", hidden=32, layers=2, seed=1)
    student = build_model(tok, root / "student", hidden=16, layers=1, seed=2)
    return teacher, student


DEMO_YAML = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"


def small_experiment(workspace: Path, *, name: str, experiment: str, n_pretrain: int,
                     n_train: int, n_test: int, teacher_steps: int, student_steps: int,
                     max_gen_toks: int) -> str:
    """The demo experiment on a testbed small enough for a test (seconds, not minutes): the
    pipeline tests and the shared-workspace tests differ only in how small."""
    return f"""
base: {DEMO_YAML}
name: {name}
workspace: {workspace}
synthetic:
  n_pretrain: {n_pretrain}
  n_train: {n_train}
  n_test: {n_test}
  teacher: {{layers: 1, hidden: 48, heads: 2, steps: {teacher_steps}, batch_size: 32}}
  student: {{layers: 1, hidden: 32, heads: 2, steps: {student_steps}, batch_size: 32}}
distill:
  epochs: 2
  batch_size: 8
  save_every: 3
evaluate:
  max_gen_toks: {max_gen_toks}
  batch_size: 24
tracking:
  experiment: {experiment}
"""

