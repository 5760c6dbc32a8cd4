"""The on-disk contracts between stages, each defined once with its version: Parquet schemas,
the token-shard format, stats.json."""
