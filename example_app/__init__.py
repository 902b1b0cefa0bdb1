"""A small FastAPI app built on async-endpoints; run it with ``python -m example_app``."""
