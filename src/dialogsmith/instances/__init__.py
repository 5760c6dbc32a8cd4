"""Stage ``instances``: comment trees -> multi-turn dialogue instances."""
