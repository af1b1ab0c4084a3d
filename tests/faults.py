"""A loopback TCP fault proxy that tests put in front of a real server (PostgreSQL, moto): it forwards
bytes, and on demand adds latency, cuts every connection, or refuses new ones."""

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream.

    - `cut()`: drop every open connection and refuse new ones (the server is gone);
    - `refuse_new()`: keep open connections, refuse new ones (the server stopped accepting);
    - `latency`: seconds added before each chunk is forwarded, either way;
    - `restore()`: forward again, without latency.
    The listening socket stays open throughout, so a refused connection is accepted and reset at once
    (as a dead host's load balancer would) and counted in `refused`.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.latency = 0.0
        self.accepted = 0  # connections forwarded
        self.refused = 0  # connections reset because the proxy was cut or refusing
        self.requests = 0  # reads forwarded from clients to the server: about one per query or request
        self._refusing = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    async def in_front_of(cls, url: str) -> tuple["TcpProxy", str]:
        """A started proxy to the server of `url` (a DSN or an http URL), and `url` pointed at it."""
        parts = urlsplit(url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        credentials = f"{parts.username}@" if parts.username else ""
        return proxy, urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{proxy.port}"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def cut(self) -> None:
        self._refusing = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def refuse_new(self) -> None:
        self._refusing = True

    async def restore(self) -> None:
        self._refusing = False
        self.latency = 0.0

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.refused += 1
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self.accepted += 1
        self._writers |= {client_writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, counted=True),
                self._pipe(upstream_reader, client_writer),
            )
        except asyncio.CancelledError:  # the proxy's loop is closing: drop the connection quietly
            client_writer.transport.abort()
            upstream_writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, counted: bool = False
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                self.requests += counted
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)
