"""Token shards: the tokenize stage's output format (docs/shard-format.md).

Layout of one shard file (all integers little-endian; readable with numpy alone)::

    offset 0   header, 64 bytes:
               magic      8s   b"DLGSHARD"
               version    u32  SHARD_FORMAT_VERSION
               dtype      u32  bytes per token: 2 (uint16, vocab_size <= 65536) or 4 (uint32)
               instances  u64  N
               turns      u64  T
               tokens     u64  K
               vocab_size u32
               eos_id     u32
               reserved   16 zero bytes
    offset 64  instance_token_offset  u64[N + 1]  tokens of instance i = tokens[a[i]:a[i+1]]
               instance_turn_offset   u64[N + 1]  turns of instance i = turn rows b[i]..b[i+1]-1
               turn_length            u32[T]      tokens per turn (turns of an instance are contiguous)
               turn_trainable         u8[T]       1 = the turn is a training target
               zero padding to a multiple of 8 bytes
               tokens                 u16|u32[K]  turn token ids, turns concatenated, no EOS stored

Example layout (DialoGPT's): ``input_ids = t0 E t1 E ... tK`` (no EOS after the last turn) and
``labels[j]`` = the token that position ``j`` must predict (already shifted, -100 = ignored): for a
trainable turn ``t_i`` the EOS before it predicts its first token, each of its tokens predicts the next
one, and its last token predicts the closing EOS. So ``loss = CE(logits[:, j], labels[:, j])`` with NO
further shift -- do not pass these labels to ``GPT2LMHeadModel(labels=...)``, which shifts again.

Modules: ``header`` (the 64 bytes, sizes), ``examples`` (layout, fitting into max_len), ``writer`` (the one
shard writer), ``manifest`` (manifest.json, write_dataset), ``reader`` (ShardReader, ShardDataset),
``verify`` (files against the manifest). Nothing here needs a tokenizer or torch (``ShardDataset.collate``
imports torch when called).
"""

from dialogsmith.formats.shards.examples import (
    NO_TRAINABLE_TURN,
    TARGET_TOO_LONG,
    ShardInstance,
    build_example,
    fit_window,
    layout,
)
from dialogsmith.formats.shards.header import (
    HEADER,
    IGNORE,
    MAGIC,
    MANIFEST,
    SHARD_FORMAT_VERSION,
    TOKENIZER_DIR,
    Header,
    ShardError,
    expected_size,
    file_sha256,
    read_header,
    token_dtype,
)
from dialogsmith.formats.shards.manifest import (
    build_manifest,
    copy_tokenizer,
    tokenizer_identity,
    write_dataset,
)
from dialogsmith.formats.shards.reader import ShardDataset, ShardReader
from dialogsmith.formats.shards.verify import verify_shards
from dialogsmith.formats.shards.writer import ShardArrays, write_shard, write_shards

__all__ = [
    "HEADER",
    "IGNORE",
    "MAGIC",
    "MANIFEST",
    "NO_TRAINABLE_TURN",
    "SHARD_FORMAT_VERSION",
    "TARGET_TOO_LONG",
    "TOKENIZER_DIR",
    "Header",
    "ShardArrays",
    "ShardDataset",
    "ShardError",
    "ShardInstance",
    "ShardReader",
    "build_example",
    "build_manifest",
    "copy_tokenizer",
    "expected_size",
    "file_sha256",
    "fit_window",
    "layout",
    "read_header",
    "token_dtype",
    "tokenizer_identity",
    "verify_shards",
    "write_dataset",
    "write_shard",
    "write_shards",
]
