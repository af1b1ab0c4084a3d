"""Process-wide tuning for serving, in one place: applied by the command that starts a serving process
(`python -m app serve`, and the benchmark's floors through the same function), never by `create_app()`, so
tests and other embedders get the interpreter as it is.

Each setting pays for itself on the API benchmark (docs/benchmarks.md) against a floor run with the same
settings.
"""

import gc
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The youngest generation is collected when tracked allocations outnumber deallocations by this many (700
# by default). With 64 requests in flight, each holding thousands of objects, it ran every few requests and
# walked them all each time: ~20 us a request (measured with gc.callbacks).
GC_YOUNGEST_THRESHOLD = 10_000


def tuned(app: ASGIApp) -> ASGIApp:
    """`app` for a serving process: the collector's thresholds raised now, and what start-up built frozen out
    of the collector's sight once the lifespan has started.

    What start-up builds (the AWS clients and their service models, the pool, the routes) lives as long as
    the process: a full collection walked it every second or two under load, a ~100 ms pause with every
    request in flight waiting (the API's p99). Start-up's own garbage is collected first, so none of it is
    frozen.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, *thresholds[1:])
    _lean_log_records()

    async def serving(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_started(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await app(scope, receive, send_started)

    return serving


def _lean_log_records() -> None:
    """No log line shows the thread, the process or the caller's file and line: without this, every record
    looks them up, walking the stack for the caller (the logging HOWTO's "Optimization" section, which
    documents these switches)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def server_options() -> dict[str, Any]:
    """uvicorn's options for a serving process (the service's and the benchmark floors' alike)."""
    return {"loop": "uvloop", "http": "httptools", "log_config": None, "access_log": False}
