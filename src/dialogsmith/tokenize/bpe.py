"""The byte-level BPE tokenizer the tokenize stage encodes with (the Rust ``tokenizers`` library): load
it, save its files with the shards, train a small one.

``load_bpe`` returns a ``tokenizers.Tokenizer`` (no transformers involved); chat, eval and train load
the saved directory with transformers instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable

from dialogsmith import fsutil

EOS_TOKEN = "<|endoftext|>"
DEFAULT_TOKENIZER = "gpt2"
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def load_bpe(spec: str):
    """A ``tokenizers.Tokenizer`` (byte-level BPE) from a local directory or a hub name such as ``gpt2``.

    Directory: ``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` (GPT-2's files).
    Special tokens in turn text are encoded as plain text: a comment containing ``<|endoftext|>`` cannot
    inject a turn separator.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    spec = str(spec)
    if os.path.isdir(spec):
        tj, vocab, merges = (os.path.join(spec, f) for f in ("tokenizer.json", "vocab.json", "merges.txt"))
        if os.path.exists(tj):
            tok = Tokenizer.from_file(tj)
        elif os.path.exists(vocab) and os.path.exists(merges):
            tok = Tokenizer(models.BPE.from_file(vocab, merges))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
        else:
            raise FileNotFoundError(
                f"tokenizer directory {spec} has neither tokenizer.json nor vocab.json + merges.txt"
            )
    else:
        try:
            tok = Tokenizer.from_pretrained(spec)
        except Exception as e:  # no network, unknown name, ...
            raise ValueError(
                f"could not load tokenizer '{spec}' from the Hugging Face hub ({e}). Offline? Pass a local "
                "directory holding vocab.json + merges.txt or tokenizer.json (GPT-2's files)"
            ) from e
    tok.encode_special_tokens = True
    return tok


def eos_id_of(tok, eos_token: str = EOS_TOKEN) -> int:
    eos = tok.token_to_id(eos_token)
    if eos is None:
        raise ValueError(f"the tokenizer has no '{eos_token}' token (needed as turn separator / EOS)")
    return int(eos)


def tokenizer_config(model_max_length: int = 1024) -> dict:
    """``tokenizer_config.json`` for transformers: a GPT-2 tokenizer whose BOS/EOS/UNK is <|endoftext|>."""
    return {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model_max_length,
        "add_prefix_space": False,
        "bos_token": EOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
    }


def save_tokenizer_files(spec: str, tok, out_dir: str) -> None:
    """Copy the tokenizer's files into ``out_dir`` so the trainer can save them with the model.

    Always leaves ``vocab.json`` + ``merges.txt`` (for ``GPT2Tokenizer``) and ``tokenizer.json`` (fast).
    """
    fsutil.makedirs(out_dir)
    copied = set()
    if os.path.isdir(str(spec)):
        for name in TOKENIZER_FILES:
            src = os.path.join(str(spec), name)
            if os.path.exists(src):
                fsutil.write_bytes(fsutil.join(out_dir, name), fsutil.read_bytes(src))
                copied.add(name)
    if "tokenizer.json" not in copied:
        fsutil.write_bytes(fsutil.join(out_dir, "tokenizer.json"), tok.to_str().encode("utf-8"))
    if not {"vocab.json", "merges.txt"} <= copied and "://" not in out_dir:
        tok.model.save(out_dir)  # BPE: writes vocab.json + merges.txt
    if "tokenizer_config.json" not in copied:
        fsutil.write_json(fsutil.join(out_dir, "tokenizer_config.json"), tokenizer_config())


def train_small_bpe(texts: Iterable[str], out_dir, vocab_size: int = 1000) -> str:
    """Train a GPT-2-style byte-level BPE of at most ``vocab_size`` ids on ``texts``; save it to
    ``out_dir`` (vocab.json, merges.txt, tokenizer.json, tokenizer_config.json) and return ``out_dir``.

    EOS convention, GPT-2's: ``<|endoftext|>`` is the LAST id (``len(vocab) - 1``; ``vocab_size - 1``
    unless the texts run out of merges first) and is in vocab.json, so ``GPT2Tokenizer``,
    ``AutoTokenizer`` and ``load_bpe`` all find it. For tests and demos without GPT-2's own files.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def byte_level(model) -> Tokenizer:
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return tok

    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # + <|endoftext|>
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    trained = byte_level(models.BPE())
    trained.train_from_iterator(list(texts), trainer=trainer)
    vocab = trained.get_vocab()
    vocab[EOS_TOKEN] = len(vocab)
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        for m in json.loads(trained.to_str())["model"]["merges"]
    ]
    tok = byte_level(models.BPE(vocab=vocab, merges=merges))
    tok.add_special_tokens([EOS_TOKEN])
    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    tok.model.save(out_dir)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    fsutil.write_json(os.path.join(out_dir, "tokenizer_config.json"), tokenizer_config())
    return out_dir


_EXECUTOR_TOKENIZERS: dict[str, object] = {}


def executor_bpe(tokenizer_json: str, threads: int):
    """One tokenizer per Python worker, rebuilt from its JSON (shipped with the task closure)."""
    key = hashlib.sha256(tokenizer_json.encode()).hexdigest()
    tok = _EXECUTOR_TOKENIZERS.get(key)
    if tok is None:
        # rayon reads this when its pool starts: one task = its spark.task.cpus cores, no oversubscription
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(tokenizer_json)
        tok.encode_special_tokens = True
        _EXECUTOR_TOKENIZERS[key] = tok
    return tok
