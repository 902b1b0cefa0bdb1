"""``python -m example_app``: serve the example with uvicorn on $HOST:$PORT (127.0.0.1:8000)."""

import os

import uvicorn


def main() -> None:
    """Serve ``example_app.main:app``."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    uvicorn.run("example_app.main:app", host=host, port=port)


if __name__ == "__main__":
    main()
