"""A tiny random Llama with a real tokenizer and chat template, for tests and benchmarks.

Built from a config in well under a second; nothing is downloaded. The folder it writes is a
normal Hugging Face model folder (config.json, model.safetensors, tokenizer.json, chat
template), so everything that loads a real model loads this one too.
"""
from __future__ import annotations

from pathlib import Path

# ChatML like SmolLM2's, minus its default system prompt (so prompts stay short in tests).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD, BOS, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

DEFAULT_CORPUS = [
    "Hello, how can I help you today?",
    "My order has not arrived yet. Can you check the tracking number?",
    "I was charged twice for the same subscription this month.",
    "Please reset my password; the reset link has expired.",
    "Thanks for reaching out. I am sorry for the trouble.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Your refund was issued and should appear within five business days.",
    "Can I change the delivery address after placing the order?",
    "positive negative neutral label answer question summary",
    "def add(a, b):\n    return a + b\n",
    '{"name": "Ada", "age": 36, "email": "ada@example.com"}',
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
]


def _train_tokenizer(corpus: list[str], vocab_size: int):
    """Byte-level BPE trained on ``corpus`` (deterministic; a few hundred merges)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import ByteLevel as ByteLevelProcessor

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = ByteLevelProcessor(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def build_tiny_model(
    out_dir: str | Path,
    corpus: list[str] | None = None,
    *,
    layers: int = 2,
    hidden: int = 64,
    seed: int = 0,
    vocab_size: int = 512,
) -> Path:
    """Write a tiny LlamaForCausalLM + fast ChatML tokenizer to ``out_dir`` and return it.

    Same arguments give byte-identical weights and the same tokenizer.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Repeat the corpus so BPE has counts to merge on even for a handful of lines.
    texts = list(corpus if corpus is not None else DEFAULT_CORPUS)
    raw = _train_tokenizer(texts * 4, vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=PAD,
        model_max_length=2048,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 16),
        num_key_value_heads=max(1, hidden // 32),
        max_position_embeddings=2048,
        # A wider init than the usual 0.02 makes the random model's logits peaked, so
        # greedy decoding is not decided by float noise (batched vs single must agree).
        initializer_range=0.2,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
