"""Stage ``sample``: synthetic Pushshift-style dumps for trying and testing every stage."""
