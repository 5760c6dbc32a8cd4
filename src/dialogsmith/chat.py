"""``dialogsmith chat``: talk to a DialoGPT-style model (a train output dir or a hub name).

Interactive on stdin (``/reset`` clears the history, ``/quit`` leaves), or non-interactive with
``--say`` (repeatable). Replies come from ``dialogsmith.generation`` (the same code as ``dialogsmith
eval``): greedy, beam, sampling, MMI reranking with ``--reverse-model``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from dialogsmith.generation import DecodeConfig, generate, load_model
from dialogsmith.stage import ERRORS, ConfigParser, option


@dataclass
class ChatConfig(DecodeConfig):
    model: str = option("", "model dir (a train output) or hub name")
    reverse_model: str | None = option(
        None, "reverse model dir for MMI reranking (trained on the tokenize stage's --reverse shards)"
    )
    num_replies: int = option(1, "replies shown per turn (best first)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    say: list = field(default_factory=list, metadata={"cli": False})  # --say, see build_parser

    def validate(self) -> ChatConfig:
        if not self.model:
            raise ValueError("--model is required")
        super().validate()
        return self


def build_parser() -> ConfigParser:
    """``build_parser().parse_args(argv)`` returns the ChatConfig."""
    p = ConfigParser(
        ChatConfig,
        prog="dialogsmith chat",
        description="Chat with a DialoGPT-style model (a train output dir or a hub name). Interactive on stdin "
        "(/reset clears the history, /quit leaves), or non-interactive with --say.",
    )
    p.add_argument(
        "--say",
        action="append",
        default=argparse.SUPPRESS,
        help="a user turn (repeatable): non-interactive mode",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = build_parser().parse_args(argv).validate()
        model, tokenizer = load_model(cfg.model, cfg.device)
        reverse = load_model(cfg.reverse_model, cfg.device)[0] if cfg.reverse_model else None
    except ERRORS as e:
        print(f"chat: error: {e}", file=sys.stderr)
        return 2
    history: list[str] = []

    def reply(text: str) -> None:
        history.append(text)
        replies = generate(
            model, tokenizer, [history], cfg, num_replies=cfg.num_replies, reverse_model=reverse
        )[0]
        history.append(replies[0] if replies else "")
        for k, r in enumerate(replies):
            print(f"bot{'' if k == 0 else f'[{k}]'}: {r}", flush=True)

    if cfg.say:
        for text in cfg.say:
            print(f"user: {text}")
            reply(text)
        return 0
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("user: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        text = line.strip()
        if text in ("/quit", "/exit"):
            return 0
        if text == "/reset":
            history.clear()
            continue
        if text:
            reply(text)
