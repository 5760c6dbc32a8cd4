"""Shard format, example layout and reader (no Spark)."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import numpy as np
import pytest

from dialogsmith.formats import shards
from dialogsmith.formats.shards import (
    IGNORE,
    ShardDataset,
    ShardError,
    ShardInstance,
    ShardReader,
    build_example,
    write_dataset,
    write_shard,
)
from dialogsmith.tokenize.bpe import eos_id_of, load_bpe, train_small_bpe
from dialogsmith.tokenize.decode import decode
from dialogsmith.tokenize.decode import main as decode_command

E = 50256
DOCS = Path(__file__).resolve().parents[1] / "docs" / "shard-format.md"


def inst(turns, flags):
    return ShardInstance([np.array(t, dtype=np.int64) for t in turns], np.array(flags, dtype=bool))


def test_worked_example_of_the_spec():
    input_ids, labels = build_example([[1, 2], [3, 4, 5], [6], [7, 8]], [0, 1, 0, 1], E, 128)
    assert input_ids.tolist() == [1, 2, E, 3, 4, 5, E, 6, E, 7, 8]
    assert labels.tolist() == [IGNORE, IGNORE, 3, 4, 5, E, IGNORE, IGNORE, 7, 8, E]
    assert input_ids.dtype == labels.dtype == np.int64


def test_first_turn_is_never_a_target_even_with_weight_1():
    input_ids, labels = build_example([[1, 2], [3]], [1, 1], E, 128)
    assert input_ids.tolist() == [1, 2, E, 3]
    assert labels.tolist() == [
        IGNORE,
        IGNORE,
        3,
        E,
    ]  # nothing predicts turn 0; turn 1 and its EOS are targets


def test_last_turn_last_token_predicts_eos():
    input_ids, labels = build_example([[1, 2], [3]], [0, 1], E, 128)
    assert input_ids.tolist() == [1, 2, E, 3]
    assert labels.tolist() == [IGNORE, IGNORE, 3, E]


def test_drop_reasons():
    assert build_example([[1], [2], [3]], [1, 0, 0], E, 128) == shards.NO_TRAINABLE_TURN
    assert build_example([[1]], [1], E, 128) == shards.NO_TRAINABLE_TURN
    # target (4 tokens) + its context turn (1) + separator = 6 > 5
    assert build_example([[1], [2, 3, 4, 5]], [0, 1], E, 5) == shards.TARGET_TOO_LONG


def test_truncation_keeps_target_whole_and_drops_oldest_context_first():
    turns = [[1, 1, 1], [2, 2], [3], [4, 4]]
    full = sum(map(len, turns)) + 3  # 11
    ids, labels = build_example(turns, [0, 1, 1, 1], E, full - 1)
    # turn 0 dropped; turn [2,2] becomes the first turn and loses its target role
    assert ids.tolist() == [2, 2, E, 3, E, 4, 4]
    assert labels.tolist() == [IGNORE, IGNORE, 3, E, 4, 4, E]
    ids, _ = build_example(turns, [0, 1, 1, 1], E, 4)
    assert ids.tolist() == [3, E, 4, 4]
    assert build_example(turns, [0, 1, 1, 1], E, 3) == shards.TARGET_TOO_LONG


def test_truncation_cuts_untrained_turns_after_the_target_first():
    turns = [[1], [2, 2], [3, 3, 3]]
    ids, labels = build_example(turns, [0, 1, 0], E, 5)
    assert ids.tolist() == [1, E, 2, 2]
    assert labels.tolist() == [IGNORE, 2, 2, E]


def test_reverse_truncation_drops_the_oldest_turns_at_the_end():
    # reversed instance: newest turn first; trainable = a later (older) turn
    turns = [[9, 9], [8], [7, 7, 7]]
    ids, labels = build_example(turns, [0, 1, 1], E, 5, reverse=True)
    assert ids.tolist() == [9, 9, E, 8]
    assert labels.tolist() == [IGNORE, IGNORE, 8, E]


def reference_example(turns, flags, eos, max_len):
    """Brute force: the longest window containing the last trainable turn (>= 1) as non-first turn."""
    tgt = [i for i in range(1, len(turns)) if flags[i]]
    if not tgt:
        return shards.NO_TRAINABLE_TURN

    def length(s, e):
        return sum(len(t) for t in turns[s:e]) + e - s - 1

    if length(0, len(turns)) <= max_len:
        s, e = 0, len(turns)
    else:
        t = tgt[-1]
        starts = [s for s in range(0, t) if length(s, t + 1) <= max_len]
        if not starts:
            return shards.TARGET_TOO_LONG
        s, e = starts[0], t + 1
    ids, labels = [], []
    for j, turn in enumerate(turns[s:e]):
        if j:
            ids.append(eos)
            labels.append(IGNORE)
        ids += turn
        labels += [IGNORE] * len(turn)
        if j and flags[s + j]:
            labels[len(ids) - len(turn) - 1 : len(ids)] = turn + [eos]
    return ids, labels


def test_build_example_matches_a_brute_force_reference():
    rng = random.Random(7)
    for _ in range(2000):
        n = rng.randint(1, 6)
        turns = [[rng.randint(0, 99) for _ in range(rng.randint(0, 8))] for _ in range(n)]
        flags = [rng.random() < 0.5 for _ in range(n)]
        max_len = rng.randint(3, 30)
        got = build_example(turns, flags, E, max_len)
        want = reference_example(turns, flags, E, max_len)
        if isinstance(want, str):
            assert got == want, (turns, flags, max_len)
        else:
            assert not isinstance(got, str), (turns, flags, max_len, got)
            assert got[0].tolist() == want[0] and got[1].tolist() == want[1], (turns, flags, max_len)
            assert len(got[0]) <= max_len


def sample_instances():
    return [
        inst([[1, 2], [3, 4, 5], [6], [7, 8]], [0, 1, 0, 1]),
        inst([[9], []], [0, 1]),
        inst([[], [10, 11], [12]], [0, 0, 1]),
    ]


def test_write_read_roundtrip_and_lengths(tmp_path):
    manifest = write_dataset(
        tmp_path, {"train": sample_instances(), "valid": sample_instances()[:1]}, E, 50257, 64
    )
    assert manifest["splits"]["train"]["instances"] == 3
    assert manifest["splits"]["train"]["tokens"] == 8 + 1 + 3
    assert manifest["token_dtype"] == "uint16"
    ds = ShardDataset(tmp_path, "train", verify=True)
    assert len(ds) == 3 and ds.eos_id == E and ds.max_len == 64 and ds.vocab_size == 50257
    for i, want in enumerate(sample_instances()):
        got = ds.instance(i)
        assert [t.tolist() for t in got.turns] == [t.tolist() for t in want.turns]
        assert got.trainable.tolist() == want.trainable.tolist()
        ids, labels = ds.example(i)
        assert len(ids) == ds.lengths[i] == want.example_length
        ref = build_example(want.turns, want.trainable, E, 64)
        assert ids.tolist() == ref[0].tolist() and labels.tolist() == ref[1].tolist()
    assert ds.lengths.dtype == np.int32
    assert ds.example(0)[1].tolist() == [IGNORE, IGNORE, 3, 4, 5, E, IGNORE, IGNORE, 7, 8, E]
    with pytest.raises(KeyError, match="has: train, valid"):
        ShardDataset(tmp_path, "test")
    with pytest.raises(IndexError):
        ds.instance(3)


def test_shard_dataset_spans_several_shards(tmp_path):
    many = [inst([[i], [i + 1, i + 2]], [0, 1]) for i in range(25)]
    write_dataset(tmp_path, {"train": many}, E, 50257, 64, shard_size=10)
    ds = ShardDataset(tmp_path)
    assert [len(s) for s in ds.shards] == [10, 10, 5]
    assert [ds.instance(i).turns[0].tolist() for i in (0, 9, 10, 24)] == [[0], [9], [10], [24]]
    assert ds.lengths.tolist() == [4] * 25


def test_large_vocabulary_uses_uint32(tmp_path):
    big = [inst([[70000], [100_000, 1]], [0, 1])]
    write_dataset(tmp_path, {"train": big}, 100_001, 100_002, 64)
    ds = ShardDataset(tmp_path)
    assert ds.manifest["token_dtype"] == "uint32"
    assert ds.shards[0].tokens.dtype == np.dtype("<u4")
    assert ds.instance(0).turns[1].tolist() == [100_000, 1]
    with pytest.raises(ValueError, match="vocab_size"):
        write_shard(tmp_path / "x.bin", [inst([[5], [70000]], [0, 1])], 65536)


def test_truncated_shard_is_detected_on_open(tmp_path):
    write_dataset(tmp_path, {"train": sample_instances()}, E, 50257, 64)
    path = tmp_path / "train" / "shard-00000.bin"
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(ShardError, match=re.escape(str(path)) + ".*truncated"):
        ShardReader(path)
    with pytest.raises(ShardError, match="shard-00000.bin"):
        ShardDataset(tmp_path)
    path.write_bytes(data[:20])
    with pytest.raises(ShardError, match="truncated"):
        ShardReader(path)
    path.write_bytes(b"NOTASHRD" + data[8:])
    with pytest.raises(ShardError, match="not a dialogsmith shard"):
        ShardReader(path)


def test_corrupted_shard_is_detected_with_verify(tmp_path, capsys):
    write_dataset(tmp_path, {"train": sample_instances()}, E, 50257, 64)
    path = tmp_path / "train" / "shard-00000.bin"
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF  # flip a token byte: same size, different content
    path.write_bytes(bytes(data))
    ShardDataset(tmp_path)  # size check alone cannot see it
    with pytest.raises(ShardError, match=re.escape(str(path)) + ".*sha256 mismatch"):
        ShardDataset(tmp_path, verify=True)
    with pytest.raises(ShardError, match="sha256 mismatch"):
        ShardReader(path, verify=True)  # finds its manifest entry itself
    assert decode_command(["decode", str(tmp_path), "--verify"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err


def docs_snippet() -> str:
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    snippet = [b for b in blocks if "np.memmap" in b]
    assert snippet, "docs/shard-format.md lost its numpy-only reading snippet"
    return snippet[0]


def test_numpy_only_reading_following_the_docs(tmp_path):
    insts = sample_instances() + [inst([[7] * 5, [300, 301], [9]], [0, 1, 1])]
    write_dataset(tmp_path, {"train": insts}, E, 50257, 64)
    path = str(tmp_path / "train" / "shard-00000.bin")
    scope = {"path": path}
    exec(compile(docs_snippet(), str(DOCS), "exec"), scope)  # numpy only, no dialogsmith
    ds = ShardDataset(tmp_path)
    assert scope["n"] == len(insts) and scope["eos_id"] == E and scope["vocab_size"] == 50257
    for i, want in enumerate(insts):
        got = scope["read_instance"](i)
        assert [t.tolist() for t, _ in got] == [t.tolist() for t in want.turns]
        assert [f for _, f in got] == want.trainable.tolist()
        ids, labels = scope["example"](i)
        ref_ids, ref_labels = ds.example(i)
        assert ids.tolist() == ref_ids.tolist() and labels.tolist() == ref_labels.tolist()


def test_decode_command_prints_turns_and_marks(tmp_path, tmp_path_factory):
    texts = ["hello there", "how are you", "fine thanks", "see you later"] * 20
    tok_dir = train_small_bpe(texts, tmp_path_factory.mktemp("bpe"), vocab_size=300)
    tok = load_bpe(tok_dir)
    eos = eos_id_of(tok)
    enc = [np.array(tok.encode(t, add_special_tokens=False).ids) for t in ("hello there", "how are you")]
    root = tmp_path / "out"
    write_dataset(
        root, {"train": [ShardInstance(enc, np.array([False, True]))]}, eos, 300, 64, tokenizer_dir=tok_dir
    )
    buf = io.StringIO()
    assert decode(str(root), n=3, out=buf, verify=True) == 1
    out = buf.getvalue()
    assert "ctx   | hello there" in out and "TRAIN | how are you" in out and "verified 1 shard" in out


def test_dataset_pickles_as_paths_for_dataloader_workers(tmp_path):
    import pickle

    many = [inst([[i] * 50, [i + 1] * 50], [0, 1]) for i in range(200)]
    write_dataset(tmp_path, {"train": many}, E, 50257, 128, shard_size=100)
    ds = ShardDataset(tmp_path)
    blob = pickle.dumps(ds)
    assert len(blob) < 1_000  # not the tokens nor the lengths: the root travels, the worker maps the shards
    again = pickle.loads(blob)
    assert len(again) == 200 and again.instance(150).turns[1].tolist() == [151] * 50
    assert again.example(3)[0].tolist() == ds.example(3)[0].tolist()
