"""dialogsmith: DialoGPT rebuilt end to end (Reddit dumps -> instances -> token shards -> GPT-2)."""

__version__ = "0.1.0"
