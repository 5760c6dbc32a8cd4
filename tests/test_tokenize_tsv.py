"""`dialogsmith tokenize` on DialoGPT TSV input (real Spark, real BPE): hand-written lines with and
without the key column, malformed lines, the golden extractor outputs and a dialogpt-tsv stage output."""

from __future__ import annotations

import gzip
import io
import json
import re

import pytest

from dialogsmith.formats import shards
from dialogsmith.formats.shards import IGNORE, ShardDataset
from dialogsmith.formats.stats import EXIT_STRICT, StageStats
from dialogsmith.tokenize import tsv
from dialogsmith.tokenize.bpe import eos_id_of, load_bpe, train_small_bpe
from dialogsmith.tokenize.decode import decode
from dialogsmith.tokenize.job import build_parser, main, run

KEYED = [  # the extractor's lines: link_id,parent_id,comment_id <TAB> src <TAB> tgt
    "t3_a,t1_b,t1_c\t1.0 hello there EOS 0.0 a bad turn EOS 1.0 how are you ?\t1.0 fine thanks",
    "t3_a,t1_b,t1_d\t0.0 hi\t0.0 nobody trains on this",  # no trainable turn: dropped
    "t3_a,t1_e,t1_f\t1.0 a literal <|endoftext|> in text\t1.0 stays text",
    "t3_a,t1_e,t1_g\t1.0 windows line EOS 1.0 ends\t1.0 with crlf\r",
]
KEYLESS = [  # train.tsv as the released Makefile keeps it (columns 2-3); and lines without weights
    "1.0 first EOS 1.0 second\t0.0 third",
    "plain context\tplain response",
    "1.0 mixed EOS unweighted turn\t1.0 reply",
]
MALFORMED = [
    "only one column",  # tsv_columns
    "a\tb\tc\td",  # tsv_columns
    "",  # a blank line: tsv_columns
    "1.0 a EOS 1.0 \t1.0 b",  # a weight without text: tsv_empty_turn
    "t3_x,t1_y,t1_z\t1.0 a\t1.0",  # tsv_empty_turn
]
NOT_UTF8 = b"1.0 caf\xe9\t1.0 latin-1\n"  # tsv_not_utf8


def reference(line: str) -> tuple[list[str], list[float]]:
    """Independent reading of a good line: the last two columns; each turn's weight prefix."""
    cols = line.rstrip("\r").split("\t")
    turns = []
    for turn in cols[-2].split(" EOS ") + [cols[-1]]:
        m = re.fullmatch(r"([01]\.0) (.*)", turn, flags=re.S)
        turns.append((m.group(2), float(m.group(1))) if m else (turn, 1.0))
    return [t for t, _ in turns], [w for _, w in turns]


def expected(tok, lines, max_len):
    """(turn texts, trainable flags) of the instances the stage must write, in order; dropped counts."""
    out, dropped = [], {}
    for line in lines:
        texts, weights = reference(line)
        ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        flags = [w > 0 and i > 0 for i, w in enumerate(weights)]
        window = shards.fit_window([len(x) for x in ids], flags, max_len)
        if isinstance(window, str):
            dropped[window] = dropped.get(window, 0) + 1
            continue
        s, e = window
        out.append((texts[s:e], [False] + flags[s + 1 : e]))
    return out, dropped


def decoded(tok, ds):
    return [
        (
            [tok.decode(t.tolist(), skip_special_tokens=False) for t in ds.instance(i).turns],
            ds.instance(i).trainable.tolist(),
        )
        for i in range(len(ds))
    ]


def test_parse_line():
    assert tsv.parse_line("k\t1.0 a EOS 0.0 b\t1.0 c") == (["a", "b", "c"], [1.0, 0.0, 1.0])
    assert tsv.parse_line("1.0 a EOS 0.0 b\t1.0 c") == (["a", "b", "c"], [1.0, 0.0, 1.0])
    assert tsv.parse_line("a EOS b\tc") == (["a", "b", "c"], [1.0, 1.0, 1.0])
    assert tsv.parse_line("2.5 million\t0.0 x") == (["2.5 million", "x"], [1.0, 0.0])
    assert tsv.parse_line("a EOSb\tc") == (["a EOSb", "c"], [1.0, 1.0])
    assert [tsv.parse_line(line) for line in MALFORMED] == [tsv.TSV_COLUMNS] * 3 + [tsv.TSV_EMPTY_TURN] * 2


def test_units_cut_at_line_ends_cover_every_line_once(tmp_path):
    lines = [f"1.0 line {i} " + "x" * (i % 37) + f"\t1.0 reply {i}" for i in range(300)]
    path = tmp_path / "train.tsv"
    path.write_text("\n".join(lines))  # no newline after the last line
    by_split = tsv.discover_tsv(str(path))
    assert list(by_split) == ["train"]
    for unit_bytes in (1, 50, 333, 10_000, 1 << 20):
        units, source = tsv.plan_tsv(by_split, unit_bytes)
        assert source["input_format"] == "dialogpt-tsv" and source["bytes"] == path.stat().st_size
        got = []
        for unit in units:
            for batch in unit.batches(batch_rows=7):
                got += [" EOS ".join(t) for t in batch.turns.to_pylist()]
        assert got == [f"line {i} " + "x" * (i % 37) + " EOS " + f"reply {i}" for i in range(300)], unit_bytes
        assert units[0].start == 0 and units[-1].end == path.stat().st_size
        assert len(units) == 300 if unit_bytes == 1 else len(units) <= 300


@pytest.fixture(scope="module")
def tsv_input(tmp_path_factory):
    root = tmp_path_factory.mktemp("tsv")
    (root / "2011-01.tsv").write_bytes(("\n".join(KEYED + MALFORMED[:3]) + "\n").encode() + NOT_UTF8)
    (root / "valid.tsv").write_text("\n".join(KEYLESS + MALFORMED[3:]))  # a split by its name
    texts = [t for line in KEYED + KEYLESS for t in reference(line)[0]] * 5
    return root, train_small_bpe(texts, tmp_path_factory.mktemp("bpe"), vocab_size=300)


def test_tsv_to_shards_decodes_to_the_same_turns_and_weights(spark, tsv_input, tmp_path, capsys):
    root, tok_dir = tsv_input
    out = tmp_path / "out"
    argv = ["--input", str(root), "--output", str(out), "--tokenizer", tok_dir, "--max-len", "64", "--strict"]
    assert main(argv) == EXIT_STRICT  # the run finished; --strict reports the quarantined lines
    assert "tsv_columns 3" in capsys.readouterr().err
    stats = StageStats.read(str(out / "stats.json")).check()
    assert stats.rows_in == len(KEYED) + len(KEYLESS) + len(MALFORMED) + 1
    assert stats.quarantined == {"tsv_columns": 3, "tsv_empty_turn": 2, "tsv_not_utf8": 1}
    assert stats.dropped == {"no_trainable_turn": 1}
    assert stats.extra["splits"]["valid"]["rows_in"] == len(KEYLESS) + 2
    tok = load_bpe(tok_dir)
    ds = ShardDataset(out, "train", verify=True)
    assert ds.manifest["source"]["input_format"] == "dialogpt-tsv" and ds.eos_id == eos_id_of(tok)
    for split, lines in (("train", KEYED), ("valid", KEYLESS)):
        want, _ = expected(tok, lines, 64)
        assert decoded(tok, ShardDataset(out, split)) == want
    assert decoded(tok, ds)[0] == (
        ["hello there", "a bad turn", "how are you ?", "fine thanks"],
        [False, False, True, True],
    )
    assert decoded(tok, ds)[2] == (["windows line", "ends", "with crlf"], [False, True, True])
    # the 0.0 turn is no target: the labels are exactly the trainable turns' tokens, each closed by EOS
    item = ds[0]
    turns = ds.instance(0).turns
    targets = [*turns[2].tolist(), ds.eos_id, *turns[3].tolist(), ds.eos_id]
    assert item["labels"][item["labels"] != IGNORE].tolist() == targets
    assert (item["weights"] == (item["labels"] != IGNORE)).all()
    buf = io.StringIO()
    decode(str(out), "train", n=1, out=buf)
    assert "ctx   | a bad turn" in buf.getvalue() and "TRAIN | fine thanks" in buf.getvalue()


def test_one_tsv_file_as_input_and_reverse(spark, tsv_input, tmp_path):
    root, tok_dir = tsv_input
    out = tmp_path / "out"
    cfg = build_parser().parse_args(
        ["--input", str(root / "valid.tsv"), "--output", str(out), "--tokenizer", tok_dir, "--reverse"]
    )
    stats = run(cfg)
    assert stats.quarantined == {"tsv_empty_turn": 2} and stats.rows_out == len(KEYLESS)
    ds = ShardDataset(out, "valid")
    tok = load_bpe(tok_dir)
    assert ds.manifest["reverse"] and decoded(tok, ds)[0] == (
        ["third", "second", "first"],
        [False, True, True],
    )


def golden_lines(shared_dir, config):
    golden = shared_dir / "golden" / "dialogpt-extractor" / "expected" / config
    if not golden.is_dir():
        pytest.skip(f"{golden} is absent")
    return {
        f.name.removesuffix(".gz"): gzip.decompress(f.read_bytes()).decode()
        for f in sorted(golden.glob("*.tsv.gz"))
    }


def test_golden_extractor_outputs_with_and_without_weights(spark, shared_dir, tmp_path):
    """Config A (weights, leaves_only 1) as train; config C (no weight prefixes, leaves_only 0) as valid."""
    root = tmp_path / "in"
    (root / "valid").mkdir(parents=True)
    lines = {"train": [], "valid": []}
    for split, config in (("train", "A"), ("valid", "C")):
        for name, text in golden_lines(shared_dir, config).items():
            (root / (name if split == "train" else f"valid/{name}")).write_text(text)
            lines[split] += text.splitlines()
    texts = [t for split in lines.values() for line in split[:400] for t in reference(line)[0]]
    tok_dir = train_small_bpe(texts, tmp_path / "bpe", vocab_size=2000)
    tok = load_bpe(tok_dir)
    out = tmp_path / "out"
    stats = run(
        build_parser().parse_args(["--input", str(root), "--output", str(out), "--tokenizer", tok_dir])
    )
    assert stats.rows_in == sum(map(len, lines.values())) and stats.quarantined == {}
    print("GOLDEN", stats.dropped, stats.extra.get("truncated_instances"), stats.rows_out)
    assert not any("0.0 " in line for line in lines["valid"]) and any(
        "\t0.0 " in line or " EOS 0.0 " in line for line in lines["train"]
    )
    for split in ("train", "valid"):
        want, dropped = expected(tok, lines[split], 128)
        assert stats.extra["splits"][split]["dropped"] == dropped
        assert decoded(tok, ShardDataset(out, split)) == want


def test_a_dialogpt_tsv_stage_output_is_read_as_it_is(spark, shared_dir, tmp_path):
    from dialogsmith.recipes import dialogpt_tsv

    golden = shared_dir / "golden" / "dialogpt-extractor"
    if not (golden / "dumps").is_dir():
        pytest.skip("golden dumps absent")
    lists = [
        "--bl_words",
        str(golden / "lists" / "words.blocklist.txt"),
        "--bl_subreddits",
        str(golden / "lists" / "subreddits.blocklist.txt"),
    ]
    months = tmp_path / "months"
    dialogpt_tsv.run(
        dialogpt_tsv.build_parser().parse_args(
            ["--dumps", str(golden / "dumps"), "--output", str(months), "--quiet", "--buckets", "2", *lists]
        )
    )
    lines = [line for f in sorted(months.glob("*.tsv")) for line in f.read_text().splitlines()]
    texts = [t for line in lines[:400] for t in reference(line)[0]]
    tok_dir = train_small_bpe(texts, tmp_path / "bpe", vocab_size=1000)
    out = tmp_path / "out"
    stats = run(
        build_parser().parse_args(["--input", str(months), "--output", str(out), "--tokenizer", tok_dir])
    )
    assert stats.rows_in == len(lines) > 100 and stats.quarantined == {}
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["splits"]) == ["train"] and manifest["source"]["files"] == 2
    assert manifest["source"]["input_stats_sha256"]  # the dialogpt-tsv run's stats/filter.json
    want, _ = expected(load_bpe(tok_dir), lines, 128)
    assert decoded(load_bpe(tok_dir), ShardDataset(out)) == want
    assert (ShardDataset(out).lengths <= 128).all()
