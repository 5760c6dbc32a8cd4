"""``dialogsmith sample``: synthetic Pushshift-style RS_/RC_ dumps into a new output directory.

The one stage without an input: its flags are the generator's (``SynthConfig``) plus ``--output`` and
``--force``. The output is committed atomically like every stage's (``stats.json``, marker, ``_SUCCESS``)
and holds ``synth_report.json``, the exact counts an ingest must reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dialogsmith.formats.stats import StageStats
from dialogsmith.sample.synth import SynthConfig, generate
from dialogsmith.stage import Stage, StageConfig, StageError, committed, option


def _not_a_flag(default):
    """A StageConfig field that does not apply to the sample (it has no input and runs no Spark)."""
    return field(default=default, metadata={"cli": False})


@dataclass
class SampleConfig(SynthConfig, StageConfig):
    input: str = _not_a_flag("")
    output: str = option(
        "",
        "output directory (created; replaced atomically when it is an earlier sample output)",
        aliases=("--out",),
    )
    force: bool = option(False, "replace an earlier sample output that holds other files too")
    strict: bool = _not_a_flag(False)  # nothing is read, so nothing can be quarantined
    quiet: bool = _not_a_flag(False)
    master: str | None = _not_a_flag(None)

    def validate(self) -> SampleConfig:
        if not self.output:
            raise StageError("--output is required")
        SynthConfig.validate(self)
        return self


def run(cfg: SampleConfig) -> StageStats:
    """Generate the sample into ``cfg.output``; every line generated is written (rows_in == rows_out)."""
    cfg.validate()
    with committed(cfg, "sample", []) as (tmp, stats):
        report = generate(tmp, cfg)
        stats.rows_in = stats.rows_out = report.lines
        stats.extra = {
            "comments": report.comments,
            "submissions": report.submissions,
            "duplicates": report.duplicates,
            "malformed": report.quarantine,  # on purpose: what an ingest must quarantine
            "written": {
                name: {k: f[k] for k in ("lines", "valid_distinct", "duplicates")}
                | {"malformed": sum(f["quarantine"].values())}
                for name, f in report.files.items()
            },
        }
    return stats


def summary(stats: StageStats, cfg: SampleConfig) -> str:
    lines = [
        f"{name:>16}: {f['lines']:>9,} lines  {f['valid_distinct']:>9,} valid  {f['duplicates']:>5} dup  "
        f"{f['malformed']:>5} malformed"
        for name, f in stats.extra["written"].items()
    ]
    lines.append(
        f"{stats.extra['comments']:,} comments, {stats.extra['submissions']:,} submissions, "
        f"{stats.rows_out:,} lines in {stats.seconds:.1f}s -> {cfg.output} (counts in synth_report.json)"
    )
    return "\n".join(lines)


STAGE = Stage(
    "sample",
    SampleConfig,
    run,
    summary,
    "Write synthetic Pushshift-style RS_/RC_ dumps (real-looking fields per era, thread shapes, text that "
    "exercises every DialoGPT rule, malformed lines) and synth_report.json with the exact counts an "
    "ingest must reproduce.",
)


def build_parser():
    return STAGE.parser()


def main(argv: list[str] | None = None) -> int:
    return STAGE.main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
