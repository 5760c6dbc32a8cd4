"""DialoGPT's released TSV format as tokenize input ("bring your own data").

A line is ``[key<TAB>]src<TAB>tgt``: ``key`` = ``link_id,parent_id,comment_id`` (the released extractor's
first column, dropped by the released Makefile for ``train.tsv``; ignored here), ``src`` = the context
turns joined by ``" EOS "``, ``tgt`` = the response. Each turn may start with its weight, ``"1.0 "`` or
``"0.0 "``; a turn without one weighs 1.0 (the extractor writes weights only with ``leaves_only`` and
``clean`` on). The weights become the turns' trainable flags exactly as in DialoGPT's prepro: a turn is a
target when its weight is > 0 and it is not the first turn of the example.

Lines that cannot be read are quarantined by reason, never fatal: ``tsv_columns`` (not 2 or 3
tab-separated fields, e.g. a blank line), ``tsv_empty_turn`` (a turn with no text after its weight),
``tsv_not_utf8``. A file is cut into units at line ends (``--tsv-task-mb`` each), so one big
``train.tsv`` spreads over the cluster.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from dialogsmith import fsutil
from dialogsmith.formats.schemas import SPLITS
from dialogsmith.tokenize.inputs import TextBatch, files_by_split, select_splits

SEPARATOR = " EOS "
WEIGHTS = {"0.0": 0.0, "1.0": 1.0}
TSV_COLUMNS = "tsv_columns"
TSV_EMPTY_TURN = "tsv_empty_turn"
TSV_NOT_UTF8 = "tsv_not_utf8"
REASONS = (TSV_COLUMNS, TSV_EMPTY_TURN, TSV_NOT_UTF8)


def parse_line(line: str) -> tuple[list[str], list[float]] | str:
    """(turn texts, weights) of one line (without its newline), or a quarantine reason."""
    fields = line.split("\t")
    if len(fields) == 3:
        fields = fields[1:]  # the key column
    if len(fields) != 2:
        return TSV_COLUMNS
    texts, weights = [], []
    for turn in [*fields[0].split(SEPARATOR), fields[1]]:
        if turn[3:4] == " " and turn[:3] in WEIGHTS:
            weight, text = WEIGHTS[turn[:3]], turn[4:]
        elif turn in WEIGHTS:
            weight, text = WEIGHTS[turn], ""
        else:
            weight, text = 1.0, turn
        if not text.strip():
            return TSV_EMPTY_TURN
        texts.append(text)
        weights.append(weight)
    return texts, weights


def parse_lines(lines: list[str | None]) -> tuple[pa.Array, pa.Array, Counter]:
    """turns list<string> and weights list<float> of the good lines (None: not UTF-8), and the
    quarantine counts."""
    offsets, texts, weights = [0], [], []
    quarantined = Counter()
    for line in lines:
        parsed = TSV_NOT_UTF8 if line is None else parse_line(line)
        if isinstance(parsed, str):
            quarantined[parsed] += 1
            continue
        texts.extend(parsed[0])
        weights.extend(parsed[1])
        offsets.append(len(texts))
    offsets_array = pa.array(offsets, type=pa.int32())
    turns = pa.ListArray.from_arrays(offsets_array, pa.array(texts, type=pa.string()))
    turn_weights = pa.ListArray.from_arrays(offsets_array, pa.array(weights, type=pa.float32()))
    return turns, turn_weights, quarantined


def decode_lines(data: bytes) -> list[str | None]:
    """The lines of a chunk that starts at a line start and ends at a line end (or the file's end);
    a line that is not UTF-8 is None. A CR before the newline is dropped."""
    try:
        lines: list[str | None] = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = []
        for raw in data.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(None)
    if lines and lines[-1] == "":
        lines.pop()  # the chunk's last newline ends a line; it does not start one
    return [line[:-1] if line and line.endswith("\r") else line for line in lines]


@dataclass(frozen=True)
class TsvUnit:
    """Bytes ``[start, end)`` of one file, cut at line ends."""

    split: str
    path: str
    start: int
    end: int

    def batches(self, batch_rows: int) -> Iterator[TextBatch]:
        fs, local = fsutil.resolve(self.path)
        with fs.open_input_file(local) as f:
            f.seek(self.start)
            data = f.read(self.end - self.start)
        lines = decode_lines(data)
        for a in range(0, len(lines), batch_rows):
            chunk = lines[a : a + batch_rows]
            turns, weights, quarantined = parse_lines(chunk)
            yield TextBatch(turns, weights, len(chunk), quarantined)


def discover_tsv(input_path: str, splits: list[str] | None = None) -> dict[str, list[str]]:
    """{split: sorted .tsv files}: ``--input`` a file, or a directory with ``IN/*.tsv`` (train; a file
    named after a split, such as ``valid.tsv``, goes to that split) and ``IN/<split>/*.tsv``."""
    fs, local = fsutil.resolve(input_path)
    if fs.get_file_info(local).is_file:
        stem = os.path.basename(local).removesuffix(".tsv")
        found = {stem if stem in SPLITS else "train": [input_path]}
    else:
        found = files_by_split(input_path, ".tsv", top_level="train")
    by_split = select_splits(found, splits, input_path, "TSV")
    if not by_split:
        raise FileNotFoundError(
            f"{input_path}: no .tsv files (expected DialoGPT TSV: IN/*.tsv or IN/<split>/*.tsv; "
            f"directories with .tsv files found: {sorted(found) or 'none'}; see --splits)"
        )
    return by_split


def line_cuts(path: str, size: int, unit_bytes: int) -> list[int]:
    """Offsets where units start: 0, then the first line start at or after every ``unit_bytes``."""
    cuts = [0]
    fs, local = fsutil.resolve(path)
    with fs.open_input_file(local) as f:
        while cuts[-1] + unit_bytes < size:
            pos = cuts[-1] + unit_bytes - 1  # a newline here makes cuts[-1] + unit_bytes a line start
            f.seek(pos)
            while True:
                block = f.read(1 << 16)
                if not block:
                    return cuts  # no newline before the end: the rest is one line
                i = block.find(b"\n")
                if i >= 0:
                    break
                pos += len(block)
            cut = pos + i + 1
            if cut >= size:
                break
            cuts.append(cut)
    return cuts


def plan_tsv(by_split: dict[str, list[str]], unit_bytes: int) -> tuple[list[TsvUnit], dict]:
    """Units of about ``unit_bytes`` whole lines in file order, and the source description
    (fingerprint of split, name and size of every file)."""
    units, digest, total_bytes = [], hashlib.sha256(), 0
    for split, files in by_split.items():
        for path in files:
            fs, local = fsutil.resolve(path)
            size = fs.get_file_info(local).size
            digest.update(f"{split}\0{os.path.basename(path)}\0{size}\n".encode())
            total_bytes += size
            cuts = line_cuts(path, size, unit_bytes)
            units += [
                TsvUnit(split, path, a, b) for a, b in zip(cuts, [*cuts[1:], size], strict=True) if b > a
            ]
    n_files = sum(len(f) for f in by_split.values())
    source = {"fingerprint": digest.hexdigest(), "files": n_files, "bytes": total_bytes}
    return units, {**source, "input_format": "dialogpt-tsv"}
