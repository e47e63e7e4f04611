"""A tiny randomly initialised GPT-2 with a byte-level tokenizer, built offline.

For tests, benchmarks and trying ``TextGenerator`` without downloading a model: it runs
the real loading and generation code in milliseconds; its completions are noise.
"""

from __future__ import annotations

from pathlib import Path

from nodes.models._runtime import require

PURPOSE = "Building the tiny test model"
EOS = "<|endoftext|>"


def build_tiny_causal_lm(
    directory: str | Path, *, layers: int = 2, width: int = 32, heads: int = 2, seed: int = 0
) -> Path:
    """Save a tiny GPT-2 and its tokenizer in ``directory``, loadable as ``TextGenerator(dir)``.

    The tokenizer maps each byte to one token (any text encodes); its one special token
    ends and pads sequences. Weights are drawn with a wide spread so that greedy decoding
    has clear winners, not near-ties that rounding could flip.
    """
    torch = require(PURPOSE, "torch")
    transformers = require(PURPOSE, "transformers")
    tokenizers = require(PURPOSE, "tokenizers")
    out = Path(directory)
    alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    vocab[EOS] = len(vocab)
    core = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=False
    )
    core.decoder = tokenizers.decoders.ByteLevel()
    core.add_special_tokens([EOS])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, pad_token=EOS
    )
    config = transformers.GPT2Config(
        vocab_size=len(vocab),
        n_positions=256,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        bos_token_id=vocab[EOS],
        eos_token_id=vocab[EOS],
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
