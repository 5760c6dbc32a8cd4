"""Stage ``extract``: Pushshift dumps -> typed, deduplicated Parquet bucketed by thread."""
