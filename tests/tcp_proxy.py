"""A TCP forwarder that a test can cut and restore, to take a real server "down" and back.

Stopping PostgreSQL or Redis themselves would disturb every other test on the machine;
cutting the path between the app and the server is what the app sees of an outage. A cut
refuses at once; a blackhole is a hung host or a partition that drops packets, where the
client waits out its own timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        # Writers that are sent nothing any more: every one open when the hole was made.
        self._dropped: set[asyncio.StreamWriter] = set()
        self._blackholed = False
        # Set when the hole drops what a client sent: a request is then waiting on it. A
        # test clears it before the request it waits for.
        self.dropped_a_request = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._streams):
            writer.transport.abort()
        self._streams.clear()
        self._dropped.clear()

    async def restore(self) -> None:
        await self.start()

    async def blackhole(self) -> None:
        """Keep accepting connections but pass nothing either way, on open ones too."""
        self._blackholed = True
        self._dropped.update(self._streams)

    async def heal(self) -> None:
        """Forward new connections again. The ones open in the hole stay silent: what was
        dropped there left them out of step, and the client gives up on them anyway."""
        self._blackholed = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blackholed:
            self._streams.add(writer)
            self._dropped.add(writer)
            await self._pipe(reader, writer)  # what the client sends, dropped until it gives up
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._streams.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if writer in self._dropped:
                    self.dropped_a_request.set()
                else:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._streams.discard(writer)
            self._dropped.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
