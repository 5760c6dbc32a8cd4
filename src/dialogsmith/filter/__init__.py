"""Filter stage: named rules, profiles (dialogpt / paper / default), funnel, dedup, splits, exports.

The names other packages use (recipes, the instances stage's DialoGPT path) are the ones listed here."""

from dialogsmith.filter.batch import InstanceView
from dialogsmith.filter.config import SPLITS, FilterConfig
from dialogsmith.filter.exports import concat_lines, tsv_lines
from dialogsmith.filter.job import STAGE, build_parser, main, run, summary
from dialogsmith.filter.profiles import FilterParams, Profile, load_lists, make_profile
from dialogsmith.filter.report import format_funnel, funnel_report
from dialogsmith.filter.rules import DUPLICATE_PAIR, RULES, Rule
from dialogsmith.filter.tasks import Judged, judge_instances

__all__ = [
    "DUPLICATE_PAIR",
    "RULES",
    "SPLITS",
    "STAGE",
    "FilterConfig",
    "FilterParams",
    "InstanceView",
    "Judged",
    "Profile",
    "Rule",
    "build_parser",
    "concat_lines",
    "format_funnel",
    "funnel_report",
    "judge_instances",
    "load_lists",
    "main",
    "make_profile",
    "run",
    "summary",
    "tsv_lines",
]
