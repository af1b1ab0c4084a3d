"""`python -m bench.serve FACTORY --port N [--workers N]`: an app factory served as `python -m app serve`
serves the service (uvicorn.run with `perf.server_options()`), so a floor differs from it only in its app."""

import argparse

import uvicorn

from app.core import perf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("factory", help="module:function returning the ASGI app, called in each worker")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        args.factory,
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        **perf.server_options(),
    )


if __name__ == "__main__":
    main()
