"""Train stage: GPT-2 fine-tuning on token shards (masked loss, packing/bucketing, AMP, DDP, exact resume)
and DialoGPT-style decoding with MMI reranking."""
