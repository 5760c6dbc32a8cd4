"""The stage skeleton: a typed config, ``run(config) -> StageStats``, and ``main(argv) -> int``.

Every stage has the same shape (docs/architecture.md)::

    @dataclass
    class ExtractConfig(StageConfig):          # fields -> --flags (and keys of a --config YAML file)
        buckets: int = option(0, "number of link_id buckets (0: by input size)")

    def run(cfg: ExtractConfig, spark=None) -> StageStats:
        ...check inputs and OUT (fail before Spark starts)...
        with committed(cfg, "extract", inputs) as (tmp, stats):
            ...plan -> Spark tasks -> fold their stats into `stats`...
        return stats                              # stats.json written and checked before the commit

    STAGE = Stage("extract", ExtractConfig, run, summary, "dumps -> Parquet")
    main = STAGE.main                              # dialogsmith extract / python extract/extract.py

Below the CLI, problems are exceptions (:class:`StageError` and the ones in ``ERRORS``), never
``SystemExit``: ``Stage.main`` turns them into ``<stage>: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields

from dialogsmith import fsutil, outputs
from dialogsmith.formats.stats import StageStats, Timer, finish

EXIT_ERROR = 2  # the stage could not run as asked (bad flags, missing or incomplete input, refused OUT)


class StageError(Exception):
    """A stage cannot run as asked; the message says what to change."""


# Errors a stage reports as ``<stage>: error: <message>`` (exit 2) instead of a traceback.
ERRORS = (StageError, outputs.OutputRefused, outputs.IncompleteInput, FileNotFoundError, ValueError)


def option(
    default,
    help: str = "",
    *,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: Iterable | None = None,
    type: Callable | None = None,
    hidden: bool = False,
    metavar: str | None = None,
):
    """A config field with its command-line help. ``flag``: another spelling than ``--field-name``;
    ``aliases``: older spellings still accepted (not shown in --help)."""
    meta = {
        "help": help,
        "aliases": aliases,
        "flag": flag,
        "choices": choices,
        "type": type,
        "hidden": hidden,
        "metavar": metavar,
    }
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.copy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class StageConfig:
    """The fields every Spark stage shares."""

    input: str = option("", "input directory (the previous stage's output)", metavar="DIR")
    output: str = option("", "output directory; written as OUT.tmp-* and committed atomically", metavar="DIR")
    force: bool = option(
        False, "replace an earlier output of this stage even when it holds files this stage did not write"
    )
    strict: bool = option(False, "exit with status 3 when input was broken or lines were quarantined")
    quiet: bool = option(False, "no progress line")
    master: str | None = option(None, "Spark master (default: local[*], or what spark-submit sets)")

    def validate(self) -> StageConfig:
        """Raise StageError for a value the stage cannot run with; subclasses extend it."""
        if not self.input:
            raise StageError("--input is required")
        if not self.output:
            raise StageError("--output is required")
        return self


# --- config -> command line ------------------------------------------------------------------------


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _value_type(hint) -> type:
    """``int | None`` -> int; ``str`` -> str; ``tuple[str, ...]`` -> tuple."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value_type(args[0]) if len(args) == 1 else str
    return typing.get_origin(hint) or hint


class _AddItems(argparse.Action):
    """A tuple/list field's flag: ``--disable a,b --disable c`` -> ("a", "b", "c"). The first use
    replaces the default (or a --config file's value), every further use adds."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = tuple(v.strip() for v in values.split(",") if v.strip())
        seen = f"{_GIVEN}{self.dest}"
        before = tuple(getattr(namespace, self.dest, None) or ()) if getattr(namespace, seen, False) else ()
        setattr(namespace, seen, True)
        setattr(namespace, self.dest, (*before, *items))


_GIVEN = "_given_"  # namespace attributes _AddItems uses while parsing (removed after)


class ConfigParser(argparse.ArgumentParser):
    """An argparse parser whose ``parse_args`` returns the config dataclass.

    Flags are set on an instance of the dataclass (argparse leaves the attributes an object already has
    alone when a flag is absent), so the dataclass defaults are the only defaults. ``--config FILE``
    (YAML or JSON) sets fields first; flags given on the command line override them."""

    def __init__(self, config_class: type, **kwargs):
        super().__init__(**kwargs)
        self.config_class = config_class
        self.add_argument(
            "--config",
            dest="_config_file",
            metavar="FILE",
            help="YAML or JSON file of config fields; flags override it",
        )
        hints = typing.get_type_hints(config_class)
        for f in fields(config_class):
            if f.name.startswith("_") or f.metadata.get("cli") is False:
                continue
            self._add_field(f, _value_type(hints[f.name]))

    def _add_field(self, f: dataclasses.Field, kind: type) -> None:
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        text = argparse.SUPPRESS if meta.get("hidden") else (meta.get("help") or "")
        if text is not argparse.SUPPRESS and default not in (None, "", False, ()) and kind is not bool:
            text += f" (default: {default})"
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": text}
        if kind in (tuple, list) and not meta.get("type"):
            kw["action"] = _AddItems
            kw["metavar"] = meta.get("metavar") or "A,B"
        elif kind is bool:
            if default:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw["action"] = "store_true"
        else:
            kw["type"] = meta.get("type") or kind
            if meta.get("choices") is not None:
                kw["choices"] = list(meta["choices"])
            if meta.get("metavar"):
                kw["metavar"] = meta["metavar"]
        self.add_argument(flag_of(f), **kw)
        for alias in meta.get("aliases") or ():
            self.add_argument(alias, **{**kw, "help": argparse.SUPPRESS})

    def parse_known_args(self, args=None, namespace=None):
        if namespace is None:
            namespace = self.config_class()
            pre = argparse.ArgumentParser(add_help=False)
            pre.add_argument("--config", dest="_config_file")
            known, _ = pre.parse_known_args(args)
            if known._config_file:
                load_config_file(namespace, known._config_file)
        ns, rest = super().parse_known_args(args, namespace)
        for name in [n for n in vars(ns) if n == "_config_file" or n.startswith(_GIVEN)]:
            delattr(ns, name)
        return ns, rest


def load_config_file(cfg, path: str) -> None:
    """Set the fields of ``cfg`` from a YAML/JSON mapping (keys may be spelled with - or _)."""
    import yaml

    with open(path) as fh:
        loaded = yaml.safe_load(fh) or {}
    if not isinstance(loaded, dict):
        raise StageError(f"{path}: expected a mapping of config fields")
    known = {f.name: f.name for f in fields(cfg)}
    for f in fields(cfg):  # a renamed flag's old spelling is a key too
        for alias in f.metadata.get("aliases") or ():
            known[alias.lstrip("-").replace("-", "_")] = f.name
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise StageError(f"{path}: unknown config field {key!r}")
        setattr(cfg, known[name], value)


def config_parser(config_class: type, prog: str, description: str) -> ConfigParser:
    return ConfigParser(config_class, prog=prog, description=description)


# --- running ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def committed(cfg: StageConfig, stage: str, inputs: Iterable[str]) -> Iterator[tuple[str, StageStats]]:
    """OUT.tmp-* for the stage to write into, and the stats it fills; on a clean exit ``stats.json``
    (checked: the counts add up) is written and the output committed atomically (outputs.py). The Spark
    jobs run inside the block show a progress line (a summary line when stderr is not a terminal)."""
    timer = Timer()
    stats = StageStats(stage=stage)
    with (
        outputs.stage_output(cfg.output, stage, list(inputs), cfg.force) as tmp,
        _progress(stage, cfg.quiet),
    ):
        yield tmp, stats
        stats.seconds = timer.seconds
        stats.write(fsutil.join(tmp, "stats.json"))


def _progress(stage: str, quiet: bool):
    """The progress line (progress.py) over the Spark jobs of the block, when a session is running."""
    if "pyspark" not in sys.modules:  # a stage without Spark (sample)
        return contextlib.nullcontext()
    from pyspark.sql import SparkSession

    from dialogsmith import progress

    spark = SparkSession.getActiveSession()
    return progress.watch(spark, stage, quiet=quiet) if spark is not None else contextlib.nullcontext()


def spark_for(cfg: StageConfig, app: str, spark=None):
    """The session to run on: ``spark`` if given (tests, the pipeline), else the active or a new one."""
    if spark is not None:
        return spark
    from dialogsmith.spark import get_spark

    return get_spark(f"dialogsmith-{app}", master=cfg.master)


@dataclass
class Stage:
    """One stage: its name (= make target = CLI subcommand = subpackage = output dir in the demo),
    config class, ``run`` and a one-line ``summary`` of its stats."""

    name: str
    config: type
    run: Callable[..., StageStats]
    summary: Callable[[StageStats, StageConfig], str]
    description: str = ""
    prog: str = ""
    # the stats whose broken/quarantined input --strict judges (default: what run returned)
    problems_of: Callable[[StageStats, StageConfig], StageStats] | None = None

    def parser(self) -> ConfigParser:
        return config_parser(self.config, self.prog or f"dialogsmith {self.name}", self.description)

    def main(self, argv: list[str] | None = None) -> int:
        try:
            cfg = self.parser().parse_args(argv)
            cfg.validate()
            stats = self.run(cfg)
        except ERRORS as e:
            print(f"{self.name}: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        print(self.summary(stats, cfg))
        return finish(self.problems_of(stats, cfg) if self.problems_of else stats, cfg.strict)
