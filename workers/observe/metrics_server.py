"""A worker process's `/metrics` endpoint (`--metrics-port`, `POSTROOM_METRICS_PORT`).

prometheus_client's own HTTP server, in a thread, rather than one on the event loop: a scrape
is answered even while the loop is busy or blocked, which is when one matters most (a stale
`postroom_worker_heartbeat_timestamp_seconds` then shows the blocked loop), rendering never
delays a job, and the library's server already does content negotiation, gzip and `name[]`
filters. The scrape only reads: the per-job counts are plain numbers the event loop alone
writes (metrics.py). prometheus_client and its HTTP server's modules (wsgiref, http.server)
are imported by `start()`: a worker without `metrics_port` never loads them.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from config.errors import ConfigError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry

logger = logging.getLogger(__name__)


class MetricsServer:
    """Serves one registry on host:port until `stop()`; port 0 takes a free one."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.requested_port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen when asked for 0)."""
        if self._server is None:
            raise RuntimeError("the metrics server is not running")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> None:
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(
                self.requested_port, addr=self.host, registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(
                f"POSTROOM_METRICS_PORT/--metrics-port: cannot serve metrics on "
                f"{self.host}:{self.requested_port}: {exc.strerror or exc}"
            ) from exc
        logger.info("metrics on %s", self.url)

    def stop(self) -> None:
        """Stop answering and close the socket; safe to call more than once."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()
