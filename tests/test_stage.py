"""The stage skeleton (stage.py): a config dataclass is the command line and the --config file."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dialogsmith.formats.stats import StageStats
from dialogsmith.stage import Stage, StageConfig, StageError, option


@dataclass
class ToyConfig(StageConfig):
    buckets: int = option(4, "buckets")
    mode: str = option("a", "mode", choices=("a", "b"))
    verify: bool = option(True, "verify")
    max_words: int = option(30, "words", aliases=("--max_len",))
    disabled: tuple[str, ...] = option(("x",), "rules off", flag="--disable")
    months: list[str] = option(["2016-01"], "months", type=lambda s: s.split(","))

    def validate(self) -> ToyConfig:
        super().validate()
        if self.buckets < 1:
            raise StageError("--buckets must be >= 1")
        return self


def _run(cfg: ToyConfig, spark=None) -> StageStats:
    return StageStats(stage="toy", rows_in=cfg.buckets, rows_out=cfg.buckets)


STAGE = Stage("toy", ToyConfig, _run, lambda stats, cfg: f"toy: {stats.rows_out} rows", "a toy stage")


def parse(*argv: str) -> ToyConfig:
    return STAGE.parser().parse_args(list(argv))


def test_defaults_are_the_dataclass_defaults_and_flags_set_fields():
    assert parse() == ToyConfig()
    cfg = parse("--input", "i", "--output", "o", "--buckets", "7", "--mode", "b", "--no-verify", "--force")
    assert (cfg.input, cfg.output, cfg.buckets, cfg.mode, cfg.verify, cfg.force) == (
        "i",
        "o",
        7,
        "b",
        False,
        True,
    )
    assert isinstance(cfg, ToyConfig)


def test_an_old_spelling_still_works_and_is_not_shown(capsys):
    assert parse("--max_len", "20").max_words == 20
    with pytest.raises(SystemExit):
        parse("--help")
    help_text = capsys.readouterr().out
    assert "--max-words" in help_text and "--max_len" not in help_text


def test_a_repeatable_field_replaces_its_default_then_adds():
    assert parse().disabled == ("x",)
    assert parse("--disable", "a,b", "--disable", "c").disabled == ("a", "b", "c")
    assert parse("--months", "2016-01,2016-02").months == ["2016-01", "2016-02"]  # own type: not repeatable


def test_a_config_file_sets_fields_and_flags_override_it(tmp_path):
    f = tmp_path / "toy.yaml"
    f.write_text("input: in\nbuckets: 9\nmax_len: 12\ndisabled: [p, q]\n")  # field names; old spellings too
    cfg = parse("--config", str(f), "--output", "o", "--buckets", "3")
    assert (cfg.input, cfg.output, cfg.buckets, cfg.max_words, cfg.disabled) == ("in", "o", 3, 12, ["p", "q"])
    assert not hasattr(cfg, "_config_file")


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bukets: 3\n")
    assert STAGE.main(["--config", str(bad), "--input", "i", "--output", "o"]) == 2
    assert capsys.readouterr().err == f"toy: error: {bad}: unknown config field 'bukets'\n"
    assert STAGE.main(["--input", "i", "--output", "o", "--buckets", "0"]) == 2
    assert capsys.readouterr().err == "toy: error: --buckets must be >= 1\n"
    assert STAGE.main(["--output", "o"]) == 2
    assert "--input is required" in capsys.readouterr().err


def test_main_runs_the_stage_and_prints_its_summary(capsys):
    assert STAGE.main(["--input", "i", "--output", "o", "--buckets", "5"]) == 0
    assert capsys.readouterr().out == "toy: 5 rows\n"
