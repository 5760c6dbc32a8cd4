"""``dialogsmith demo`` (``make demo``): every stage on a synthetic sample, then a summary report.

    dialogsmith demo --data data/demo --seed 1234 --comments 20000

Each step writes DATA/<step>, named as its stage (steps.py): sample/, extract/, instances/, filter/,
tokenizer/ (a small BPE trained on the train split), tokenize/, train/, eval/; then DATA/report.md and
report.json (report.py). The Spark stages run in this process on one local Spark session; the trainer
too (torch, CPU).

A step whose inputs are unchanged is skipped (cache.py): its fingerprint (its parameters, the
fingerprints of the steps it reads and the code: every source file of the package, and the versions
of Python and of the dependencies) is stored in DATA/.demo/<step>.json with the list of files it
wrote; the step runs again when the fingerprint differs, a file it wrote is missing or changed size,
or ``--force`` is given.
"""

from dialogsmith.demo.config import DemoConfig, DemoError
from dialogsmith.demo.report import build_report, format_report, write_report
from dialogsmith.demo.run import build_parser, main, run_demo
from dialogsmith.demo.steps import STEP_NAMES, STEPS

__all__ = [
    "STEPS",
    "STEP_NAMES",
    "DemoConfig",
    "DemoError",
    "build_parser",
    "build_report",
    "format_report",
    "main",
    "run_demo",
    "write_report",
]
