"""Stage ``tokenize``: filter output (or DialoGPT TSV) -> token shards.

A subpackage, never a top-level folder on sys.path: ``import tokenize`` stays the standard library's."""
