"""Acceptance: `make dialogpt-tsv` reproduces the released DialoGPT extractor's output line for line.

Configs A-D of the spec (shared/specs/dialogpt-extractor.md) ("Golden configs"), both months: our
OUT/<month>.tsv sorted bytewise == the gunzipped expected/<config>/<month>.tsv.gz. The pipeline runs
through the make target's code path (filter/dialogpt_tsv.py → dialogsmith.recipes.dialogpt_tsv.main),
with the whole month in one link-id bucket and spread over 7 (threads whose comments name parents in
other threads then cross buckets: the month-wide parent lookup must still be exact).
"""

from __future__ import annotations

import gzip

import pytest

from dialogsmith.formats.stats import StageStats
from dialogsmith.recipes import dialogpt_tsv

CONFIGS = {
    "A": ["--min_score", "1", "--min_depth", "2", "--max_depth", "5", "--use_title", "0", "--leaves_only", "1"],
    "B": ["--min_score", "0", "--min_depth", "2", "--max_depth", "7", "--use_title", "1", "--leaves_only", "1",
          "--keys", "{golden}/keys"],
    "C": ["--min_score", "0", "--min_depth", "3", "--max_depth", "10", "--use_title", "0", "--leaves_only", "0"],
    "D": ["--max_len", "20", "--min_score", "2", "--min_depth", "2", "--max_depth", "3", "--use_title", "1",
          "--leaves_only", "0"],
}  # fmt: skip
MONTHS = ("2011-01", "2011-02")


@pytest.mark.parametrize("buckets", ["1", "7"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_golden_config(spark, shared_dir, tmp_path, config, buckets):
    golden = shared_dir / "golden" / "dialogpt-extractor"
    flags = [f.format(golden=golden) for f in CONFIGS[config]]
    lists = ["--bl_words", str(golden / "lists" / "words.blocklist.txt"),
             "--bl_subreddits", str(golden / "lists" / "subreddits.blocklist.txt")]  # fmt: skip
    out = tmp_path / "out"
    rc = dialogpt_tsv.main(
        [
            "--dumps",
            str(golden / "dumps"),
            "--output",
            str(out),
            "--quiet",
            "--buckets",
            buckets,
            *flags,
            *lists,
        ]
    )
    assert rc == 0
    stats = StageStats.read(str(out / "stats" / "filter.json")).check()
    total = 0
    for month in MONTHS:
        got = sorted((out / f"{month}.tsv").read_bytes().splitlines())
        want = sorted(
            gzip.decompress((golden / "expected" / config / f"{month}.tsv.gz").read_bytes()).splitlines()
        )
        assert got == want, (
            f"config {config} {month}: {len(set(got) - set(want))} extra, {len(set(want) - set(got))} missing"
        )
        total += len(got)
    assert total == stats.rows_out
    assert (out / "stats" / "funnel.json").exists() and not (out / "work").exists()
