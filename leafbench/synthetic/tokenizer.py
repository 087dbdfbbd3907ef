"""A byte-level BPE tokenizer trained on the corpus, with a chat template.

Teacher and student share this one tokenizer, which logit distillation requires. The
pre-tokenizer is GPT-2's byte-level split, which keeps a run of digits apart from letters and
punctuation, so a number such as " 12" becomes one or two tokens of its own and its characters
can be recovered through the offsets mapping (offsets are trimmed of the leading space).

A conversation renders as

    <|bos|><|user|>\n{instruction}\n<|assistant|>\n{response}<|eos|>

so the prompt contains the instruction verbatim and the training text of a pair is
prompt + response + eos_token. The bos token is part of the rendered text, so tokenizing it
adds nothing else. Padding is on the right (the transformers default); left-pad for batched
generation.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from leafbench.samples import chat_prompt

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}<|assistant|>\n{{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int = 512
                    ) -> PreTrainedTokenizerFast:
    """Learn BPE merges on `texts` and wrap the result for transformers."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, USER, ASSISTANT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=[USER, ASSISTANT],
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )


def encode_pair(tokenizer: PreTrainedTokenizerFast, instruction: str, response: str
                ) -> tuple[list[int], list[int]]:
    """input_ids of prompt + response + eos, and labels that are -100 on the prompt, so the
    loss covers the response (and the eos that ends it) only."""
    prompt = chat_prompt(tokenizer, instruction)
    enc = tokenizer(prompt + response + tokenizer.eos_token, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [tid if start >= len(prompt) else -100
              for tid, (start, _) in zip(ids, enc["offset_mapping"], strict=True)]
    return ids, labels
