"""Tokenize stage: real Spark job on small FILTERED Parquet fixtures, real BPE tokenizers."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dialogsmith.formats import schemas, shards
from dialogsmith.formats.shards import ShardDataset
from dialogsmith.formats.stats import StageStats
from dialogsmith.stage import EXIT_ERROR
from dialogsmith.tokenize.bpe import eos_id_of, load_bpe, train_small_bpe
from dialogsmith.tokenize.job import TokenizeConfig, build_parser, main, run

MAX_LEN = 48
WORDS = (
    "the a cat dog reddit thread why how is it really good bad lol ok thanks sure no yes python spark".split()
)
SPECIAL_TEXTS = [
    "naïve café — 日本語 🎉 emoji",
    "",  # empty turn
    "literal <|endoftext|> inside a comment",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines",
]


def make_rows(n: int, split: str, seed: int) -> list[dict]:
    rng = random.Random(seed)

    def sentence(lo=1, hi=14):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    rows = []
    for i in range(n):
        k = rng.randint(2, 5)
        turns = [sentence() for _ in range(k)]
        weights = [float(rng.random() < 0.7) for _ in range(k)]
        if i % 17 == 0:
            turns[rng.randrange(k)] = rng.choice(SPECIAL_TEXTS)
        if i % 23 == 0:  # too long: context gets cut
            turns[0] = sentence(40, 60)
            weights[-1] = 1.0
        if i % 41 == 0:  # the target alone does not fit
            turns[-1] = sentence(60, 70)
            weights[-1] = 1.0
        if i % 5 == 1:  # a sibling in the same thread: shares the context turn (encoded once per batch)
            turns[0] = rows[-1]["turns"][0]
        rows.append(row(f"{split}{i}", turns, weights, split))
    return rows


def row(iid, turns, weights, split):
    k = len(turns) if turns is not None else 0
    return dict(
        instance_id=iid,
        link_id="t3_abc",
        parent_id="t1_p",
        target_id=iid,
        subreddit="askreddit",
        month="2015-01",
        target_score=3,
        target_created_utc=1420070400,
        turn_ids=[str(j) for j in range(k)],
        turn_authors=["u"] * k,
        turns_raw=turns,
        turns=turns,
        turn_weights=weights,
        weights_in_text=False,
        split=split,
    )


def write_filter_output(root: Path, rows_by_split: dict[str, list[dict]], files_per_split: int = 2) -> Path:
    schema = schemas.with_metadata(schemas.FILTERED, "filtered", schemas.FILTERED_VERSION)
    for split, rows in rows_by_split.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        per = -(-len(rows) // files_per_split)
        for f in range(files_per_split):
            chunk = rows[f * per : (f + 1) * per]
            table = pa.Table.from_pylist(chunk, schema=schema)
            pq.write_table(table, root / split / f"part-{f:05d}.parquet", row_group_size=40)
    return root


@pytest.fixture(scope="module")
def fixture_input(tmp_path_factory):
    root = tmp_path_factory.mktemp("filtered")
    rows = {
        "train": make_rows(240, "train", 1),
        "valid": make_rows(30, "valid", 2),
        "test": make_rows(20, "test", 3),
    }
    # quarantine cases
    rows["train"].append(row("bad1", None, None, "train"))
    rows["train"].append(row("bad2", ["a", "b"], [1.0], "train"))
    rows["train"].append(row("bad3", ["a", None], [0.0, 1.0], "train"))
    write_filter_output(root, rows)
    return root, rows


@pytest.fixture(scope="module")
def small_bpe(tmp_path_factory, fixture_input):
    _, rows = fixture_input
    texts = [t for r in rows["train"] if r["turns"] for t in r["turns"] if t] + SPECIAL_TEXTS
    return train_small_bpe(texts, tmp_path_factory.mktemp("bpe"), vocab_size=400)


def args_for(inp, out, tokenizer, *extra) -> TokenizeConfig:
    return build_parser().parse_args(
        [
            "--input",
            str(inp),
            "--output",
            str(out),
            "--tokenizer",
            str(tokenizer),
            "--max-len",
            str(MAX_LEN),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def stage_output(spark, fixture_input, small_bpe, tmp_path_factory):
    inp, _ = fixture_input
    out = tmp_path_factory.mktemp("tok") / "out"
    stats = run(args_for(inp, out, small_bpe, "--shard-size", "50"))
    return out, stats


def expected_instances(tok, rows, max_len, reverse=False):
    """Independent reference: instances the stage must write (in order), as (turn texts, trainable)."""
    out, dropped = [], {}
    for r in rows:
        if (
            r["turns"] is None
            or any(t is None for t in r["turns"])
            or len(r["turn_weights"]) != len(r["turns"])
        ):
            continue
        turns, weights = list(r["turns"]), list(r["turn_weights"])
        if reverse:
            turns, weights = turns[::-1], weights[::-1]
        ids = [tok.encode(t, add_special_tokens=False).ids for t in turns]
        flags = [w > 0 and i > 0 for i, w in enumerate(weights)]
        window = shards.fit_window([len(x) for x in ids], flags, max_len, reverse)
        if isinstance(window, str):
            dropped[window] = dropped.get(window, 0) + 1
            continue
        s, e = window
        out.append((turns[s:e], [False] + flags[s + 1 : e]))
    return out, dropped


def test_stage_round_trip_counts_and_manifest(stage_output, fixture_input, small_bpe):
    out, stats = stage_output
    _, rows = fixture_input
    tok = load_bpe(small_bpe)
    manifest = ShardDataset(out, "train").manifest
    on_disk = StageStats.read(str(out / "stats.json")).check()
    assert on_disk.rows_in == sum(len(r) for r in rows.values()) == stats.rows_in
    assert on_disk.quarantined == {"bad_turn_weights": 1, "null_turns": 2}
    assert on_disk.dropped[shards.TARGET_TOO_LONG] > 0 and on_disk.dropped[shards.NO_TRAINABLE_TURN] > 0
    assert on_disk.extra["truncated_instances"] > 0
    assert on_disk.extra["tokens_encoded"] < on_disk.extra["tokens_in"]  # shared turns encoded once
    assert (
        manifest["stats"]["rows_out"]
        == on_disk.rows_out
        == sum(s["instances"] for s in manifest["splits"].values())
    )
    assert "seconds" not in manifest["stats"]
    assert manifest["eos_id"] == eos_id_of(tok) and manifest["max_len"] == MAX_LEN and not manifest["reverse"]
    assert set(manifest["tokenizer"]["files"]) >= {"vocab.json", "merges.txt", "tokenizer.json"}
    total_dropped = {}
    for split in ("train", "valid", "test"):
        entry = manifest["splits"][split]
        assert entry["instances"] == sum(s["instances"] for s in entry["shards"])
        assert entry["tokens"] == sum(s["tokens"] for s in entry["shards"])
        assert [s["file"] for s in entry["shards"]] == [
            f"{split}/shard-{k:05d}.bin" for k in range(len(entry["shards"]))
        ]
        for s in entry["shards"]:
            assert s["bytes"] == os.path.getsize(out / s["file"])
            assert s["sha256"] == hashlib.sha256((out / s["file"]).read_bytes()).hexdigest()
        want, dropped = expected_instances(tok, rows[split], MAX_LEN)
        for reason, n in dropped.items():
            total_dropped[reason] = total_dropped.get(reason, 0) + n
        ds = ShardDataset(out, split, verify=True)
        assert len(ds) == len(want) == on_disk.extra["splits"][split]["rows_out"]
        assert (ds.lengths <= MAX_LEN).all()
        for i, (texts, flags) in enumerate(want):
            got = ds.instance(i)
            assert [tok.decode(t.tolist(), skip_special_tokens=False) for t in got.turns] == texts
            assert got.trainable.tolist() == flags
            ids, labels = ds.example(i)
            assert len(ids) == ds.lengths[i] <= MAX_LEN and (labels != shards.IGNORE).any()
    assert total_dropped == on_disk.dropped
    # the tokenizer saved with the shards loads in transformers and encodes like the stage did
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(ds.tokenizer_dir)
    assert hf.eos_token_id == ds.eos_id
    assert hf.encode("why is it good") == tok.encode("why is it good").ids


def test_stage_shards_are_what_write_shard_writes(stage_output, tmp_path):
    """One writer: every shard of the stage equals write_shard() of its own instances, byte for byte."""
    out, _ = stage_output
    ds = ShardDataset(out, "train")
    for k, reader in enumerate(ds.shards):
        again = tmp_path / f"{k}.bin"
        shards.write_shard(again, [reader.instance(i) for i in range(len(reader))], ds.vocab_size, ds.eos_id)
        assert again.read_bytes() == (out / "train" / f"shard-{k:05d}.bin").read_bytes()


def test_special_tokens_in_text_are_plain_text(stage_output, small_bpe):
    out, _ = stage_output
    ds = ShardDataset(out, "train")
    eos = ds.eos_id
    assert all(eos not in t for i in range(len(ds)) for t in ds.instance(i).turns)


def test_rerun_is_byte_identical(spark, stage_output, fixture_input, small_bpe, tmp_path):
    out, _ = stage_output
    inp, _ = fixture_input
    again = tmp_path / "again"
    run(args_for(inp, again, small_bpe, "--shard-size", "50", "--master", "local[1]"))
    timed = ("stats.json", "_dialogsmith.json")  # the marker lists stats.json's size, which has timings
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name not in timed)
    assert files == sorted(
        p.relative_to(again) for p in again.rglob("*") if p.is_file() and p.name not in timed
    )
    assert len([f for f in files if f.suffix == ".bin"]) >= 5
    for f in files:
        assert (out / f).read_bytes() == (again / f).read_bytes(), f


def test_reverse_from_a_dataframe(spark, fixture_input, small_bpe, tmp_path):
    _, rows = fixture_input
    good = rows["valid"]
    df = spark.createDataFrame(
        [(r["split"], r["turns"], r["turn_weights"]) for r in good],
        "split string, turns array<string>, turn_weights array<float>",
    )
    out = tmp_path / "rev"
    stats = run(args_for("unused", out, small_bpe, "--reverse"), input=df)
    tok = load_bpe(small_bpe)
    want, dropped = expected_instances(tok, good, MAX_LEN, reverse=True)
    ds = ShardDataset(out, "valid")
    assert ds.manifest["reverse"] is True and stats.dropped == dropped and len(ds) == len(want)
    # a DataFrame's row order is Spark's: compare as multisets
    got = []
    for i in range(len(ds)):
        inst = ds.instance(i)
        texts = tuple(tok.decode(t.tolist(), skip_special_tokens=False) for t in inst.turns)
        got.append((texts, tuple(inst.trainable.tolist())))
    assert sorted(got) == sorted((tuple(t), tuple(f)) for t, f in want)
    assert not list(tmp_path.glob("rev.input-*")), "the staged DataFrame copy is removed"


def test_gpt2_tokenization_matches_the_python_reference_bpe(spark, gpt2_dir, tmp_path):
    from bpe_reference import PythonGPT2BPE
    from transformers import GPT2Tokenizer

    texts = [
        ["hello , how are you ?", "i 'm fine , thanks !", "what 's up"],
        ["naïve café 🎉", "it's 5 o'clock"],
    ]
    inp = write_filter_output(
        tmp_path / "in", {"train": [row(f"x{i}", t, [1.0] * len(t), "train") for i, t in enumerate(texts)]}, 1
    )
    out = tmp_path / "out"
    run(args_for(inp, out, gpt2_dir))
    ds = ShardDataset(out, "train")
    assert ds.eos_id == 50256 and ds.vocab_size == 50257 and ds.manifest["token_dtype"] == "uint16"
    reference = PythonGPT2BPE(
        str(gpt2_dir / "vocab.json"), str(gpt2_dir / "merges.txt")
    )  # DialoGPT's algorithm
    hf = GPT2Tokenizer(str(gpt2_dir / "vocab.json"), str(gpt2_dir / "merges.txt"))
    for i, turns in enumerate(texts):
        got = [t.tolist() for t in ds.instance(i).turns]
        assert got == [reference.encode(t) for t in turns] == [hf.encode(t) for t in turns]
        assert [reference.decode(t) for t in got] == turns
    ids, labels = ds.example(0)
    assert ids.tolist().count(50256) == 2 and labels[-1] == 50256


def test_cli_errors_are_clear(spark, tmp_path, fixture_input, small_bpe, capsys):
    assert (
        main(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), "--tokenizer", small_bpe])
        == EXIT_ERROR
    )
    assert "no Parquet files" in capsys.readouterr().err
    empty_tok = tmp_path / "tok"
    empty_tok.mkdir()
    assert (
        main(
            ["--input", str(fixture_input[0]), "--output", str(tmp_path / "o"), "--tokenizer", str(empty_tok)]
        )
        == EXIT_ERROR
    )
    assert "neither tokenizer.json nor vocab.json" in capsys.readouterr().err
    bad = tmp_path / "bad" / "train"
    bad.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), bad / "p.parquet")
    assert (
        main(["--input", str(bad.parent), "--output", str(tmp_path / "o"), "--tokenizer", small_bpe])
        == EXIT_ERROR
    )
    assert "missing column 'turns'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_on_a_filter_output_with_dropped_rows_and_an_empty_split(spark, tmp_path, small_bpe, capsys):
    rows = [row("a", ["hi there", "hello"], [1.0, 1.0], "train"), row("b", ["x", "y"], [1.0, 0.0], "train")]
    inp = write_filter_output(tmp_path / "in", {"train": rows}, 1)
    empty = pa.Table.from_pylist([], schema=schemas.with_metadata(schemas.FILTERED, "filtered", 1))
    (inp / "valid").mkdir()
    pq.write_table(empty, inp / "valid" / "part-empty.parquet")
    (inp / "dropped").mkdir()  # the filter stage's dropped rows: not a split
    dropped = pa.Table.from_pylist(
        [{**rows[0], "reason": "too_short"}], schema=schemas.with_metadata(schemas.DROPPED, "dropped", 1)
    )
    pq.write_table(dropped, inp / "dropped" / "part-00000.parquet")
    out = tmp_path / "out"
    assert main(["--input", str(inp), "--output", str(out), "--tokenizer", small_bpe, "--max-len", "16"]) == 0
    assert "2 instances in, 1 written" in capsys.readouterr().out
    manifest = ShardDataset(out, "train").manifest
    assert sorted(manifest["splits"]) == ["train", "valid"]
    assert manifest["stats"]["rows_in"] == 2 and manifest["stats"]["dropped"] == {"no_trainable_turn": 1}
    assert len(ShardDataset(out, "valid")) == 0 and len(ShardDataset(out, "valid").lengths) == 0
    assert (
        main(["--input", str(inp), "--output", str(out), "--tokenizer", small_bpe, "--splits", "dropped"])
        == EXIT_ERROR
    )
    assert "expected table 'filtered'" in capsys.readouterr().err
