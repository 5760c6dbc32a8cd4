"""Filter stage: named rules, profiles (dialogpt / paper / default), funnel, dedup, splits, exports."""

from dialogsmith.filter.job import build_parser, main, run
from dialogsmith.filter.profiles import FilterParams, Profile, make_profile
from dialogsmith.filter.rules import RULES, InstanceView, Rule

__all__ = [
    "RULES",
    "FilterParams",
    "InstanceView",
    "Profile",
    "Rule",
    "build_parser",
    "main",
    "make_profile",
    "run",
]
