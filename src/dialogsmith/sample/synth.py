"""Synthetic Pushshift-style Reddit dumps: ``RS_YYYY-MM`` and ``RC_YYYY-MM`` files that look like the real ones.

What it writes, per month of ``SynthConfig.months`` (see docs/sample-data.md for the full list):

* era-specific fields and JSON types (string ``created_utc`` 2007-11..2015-11, no ``ups`` from 2016-10,
  null scores in 2017-10/11, raw-API rows in 2015-02, float ``created_utc`` + ``_meta`` from 2023, or the
  BigQuery export shape with every number as a string): ``eras.py``, ``records.py``;
* thread shapes: chains deeper than 10, wide threads, orphans (1% of comments and 1% of submissions are
  never written, as in the real dumps), replies landing in the next month, an optional mega-thread
  (``classic.py``); with ``shape="realistic"`` the skewed, deep threads measured on independent months
  (15% of submissions with 0-1 comments, 2% with 500-2,000; long chains of replies to the newest
  comment), streamed to disk in time windows so that memory does not grow with the month
  (``realistic.py``);
* text: templated question -> answer chat (learnable by a tiny model) mixed with filler and with text that
  trips every DialoGPT extractor rule (``vocab.py``);
* malformed lines of every quarantine reason, and duplicated lines, counted exactly in ``SynthReport``;
* real compression: ``.zst`` with a declared 2 GiB window (``zstd --long=31``), ``.bz2``, ``.xz``, ``.gz``,
  plain (``files.py``).

Deterministic: the same config gives byte-identical files (single-threaded zstd, gzip mtime 0; random
streams are numpy PCG64 and Python's ``random``, both seeded from ``SynthConfig.seed``).

Speed (measured, one core): ~5-7 s per million comment lines written as .zst. The per-line Python
work is one dict and one ``orjson.dumps``; thread structure, ids, times and scores are drawn with
numpy (classic: for a whole month at once; realistic: per time window), text is picked from pools
built once. Peak RSS, realistic: 0.35 GB at 1M lines, 0.42 GB at 5M, 0.50 GB at 16M.

The command line, ``dialogsmith sample``, is the stage in ``dialogsmith.sample.job``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import orjson

from dialogsmith.sample.classic import generate_classic
from dialogsmith.sample.config import SynthConfig, SynthReport
from dialogsmith.sample.realistic import generate_realistic
from dialogsmith.sample.vocab import TextBank

__all__ = ["SynthConfig", "SynthReport", "generate"]

REPORT = "synth_report.json"


def generate(out_dir: str | Path, config: SynthConfig) -> SynthReport:
    """Write RS_/RC_ files for every month of ``config`` into ``out_dir`` plus ``synth_report.json``."""
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bank = TextBank(config.seed, config.shape)
    months = sorted(config.months)
    files: dict[str, dict] = {}
    if config.shape == "realistic":
        generate_realistic(out, config, bank, months, files)
    else:
        generate_classic(out, config, bank, months, files)
    return _finish_report(out, files)


def _finish_report(out: Path, files: dict[str, dict]) -> SynthReport:
    quarantine: Counter[str] = Counter()
    for f in files.values():
        quarantine.update(f["quarantine"])
    report = SynthReport(
        files=dict(sorted(files.items())),
        comments=sum(f["valid_distinct"] for f in files.values() if f["kind"] == "comments"),
        submissions=sum(f["valid_distinct"] for f in files.values() if f["kind"] == "submissions"),
        lines=sum(f["lines"] for f in files.values()),
        quarantine=dict(sorted(quarantine.items())),
        duplicates=sum(f["duplicates"] for f in files.values()),
    )
    tmp = out / (REPORT + ".tmp")
    tmp.write_bytes(orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2))
    os.replace(tmp, out / REPORT)
    return report
