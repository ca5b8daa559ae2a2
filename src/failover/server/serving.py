"""``failover serve``: the gateway on uvicorn (httptools, uvloop), one process or several.

One worker is one process: uvicorn's server on a socket bound here, in a uvloop event loop, with
the raw :class:`~failover.server.app.GatewayApp` (no access log, no proxy-header middleware: each
costs throughput on the hot path). Several workers (``--workers N``) are N such processes, each
with its own socket on the same address (``SO_REUSEPORT``: the kernel spreads connections over
them, where one shared accept queue would wake them all). They share health, cooldowns and
inbound limits only through Redis, so N > 1 needs ``state.backend: redis``; the request log's
migrations run once, in the parent, before the workers start. (One worker's throughput and cost:
BENCHMARKS.md, "Gateway overhead".)

Each connection is held to :class:`~failover.server.connection.ConnectionLimits` (sizes of the
head, time to send it and the body: :mod:`failover.server.connection`).

Shutdown on SIGTERM or SIGINT: ``/ready`` turns 503, the socket stops accepting, in-flight
requests finish (up to ``drain_seconds``: the longest route deadline, at least 30 s). Chat
requests still running then are cut: answered 503 ``shutting_down``, or, for a stream already
under way, ended with that error event, and recorded; then the gateway flushes the request log and
closes its upstream connections and background losers. A second SIGINT forces the exit (what
runs then is neither answered nor recorded).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator, Sequence
from types import FrameType

import uvicorn
import uvloop

from failover.config import Config
from failover.errors import CannotListen, ConfigError, StoreError
from failover.gateway import Gateway, migrate_store
from failover.logsafe import configure_logging
from failover.server.app import GatewayApp
from failover.server.connection import ConnectionLimits, GuardedHttpTools

__all__ = [
    "CannotListen",
    "bind_socket",
    "check_workers",
    "drain_bound",
    "run_server",
    "serve",
    "serve_command",
    "uvicorn_config",
]

logger = logging.getLogger("failover.server")

_MAX_DRAIN_SECONDS = 300.0
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve_command(
    path: str | None, *, host: str | None = None, port: int | None = None, workers: int = 1
) -> int:
    """``failover serve``: resolve the config (``--config``, else ``./failover.yaml``, else the
    environment and ``.env``), apply ``--host``/``--port``, serve; the exit code (2: bad config).
    """
    from failover.check import resolve_config

    configure_logging(logging.INFO, _LOG_FORMAT)
    try:
        config = resolve_config(path).with_server(host=host, port=port)
        return serve(config, workers=workers)
    except ConfigError as exc:
        print(f"failover serve: {exc}", file=sys.stderr)
        return 2
    except CannotListen as exc:
        print(f"failover serve: {exc}", file=sys.stderr)
        return 1


def check_workers(config: Config, workers: int) -> None:
    """Refuse ``workers`` > 1 unless state is shared through Redis (ConfigError, with advice)."""
    if workers < 1:
        raise ConfigError("--workers", "must be at least 1")
    if workers > 1 and config.state.backend != "redis":
        raise ConfigError(
            "state.backend",
            f"--workers {workers} needs state.backend: redis (with url:), so that the workers "
            "share health, cooldowns and inbound limits; run one worker with the memory backend",
        )


def drain_bound(config: Config) -> float:
    """How long in-flight requests may take to finish at shutdown (seconds)."""
    deadlines = [route.deadline for route in config.routes.values()]
    return min(max([30.0, *deadlines]), _MAX_DRAIN_SECONDS)


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_config(
    app: GatewayApp, *, drain_seconds: float, limits: ConnectionLimits | None = None
) -> uvicorn.Config:
    """uvicorn's settings for the gateway: the fast paths, nothing on the hot path, and each
    connection held to ``limits`` (default: :class:`ConnectionLimits`' own)."""
    return uvicorn.Config(
        app,
        http=GuardedHttpTools.bounded_by(limits or ConnectionLimits()),
        loop="uvloop",
        ws="none",
        lifespan="on",
        interface="asgi3",
        access_log=False,
        proxy_headers=False,  # its middleware costs every request; limits use the peer address
        server_header=False,
        log_config=None,  # the CLI configures logging; uvicorn must not replace it
        log_level="warning",  # the start line is ours; uvicorn's own are noise at info
        timeout_graceful_shutdown=int(drain_seconds) or 1,
        backlog=2048,
    )


async def run_server(
    config: Config,
    sockets: Sequence[socket.socket],
    *,
    drain_seconds: float | None = None,
    workers: int = 1,
    announce: bool = True,
) -> None:
    """Serve ``config`` on ``sockets`` in the running loop until SIGTERM or SIGINT.

    ``announce``: log the start line (address, routes, ``workers``) once the sockets listen.
    """
    gateway = Gateway(config)
    startup = []
    if config.health.check_on_startup:
        from failover.check import run_startup_check

        async def check() -> None:
            await run_startup_check(gateway, logger)

        startup.append(check)
    app = GatewayApp(gateway, on_startup=startup)
    bound = drain_bound(config) if drain_seconds is None else drain_seconds
    server = _Server(uvicorn_config(app, drain_seconds=bound), app)
    if announce:
        port = sockets[0].getsockname()[1]
        server.on_started = lambda: _log_start(config, port, workers)
    await server.serve(sockets=list(sockets))


def serve(config: Config, *, workers: int = 1, drain_seconds: float | None = None) -> int:
    """Run the gateway in the foreground until SIGTERM or SIGINT; the exit code.

    Raises :class:`~failover.errors.ConfigError` when the config cannot be served as asked
    (``workers`` > 1 without Redis; the public host without keys is refused by the config), and
    :class:`CannotListen` when the address cannot be bound.
    """
    check_workers(config, workers)
    host, port = config.server.host, config.server.port
    try:
        sock = bind_socket(host, port, reuse_port=workers > 1)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    if workers == 1:
        with sock:
            uvloop.run(run_server(config, [sock], drain_seconds=drain_seconds))
        return 0
    # The parent keeps its socket bound (not listening) so that the port stays reserved; each
    # worker binds its own on the same port, and only listening sockets take connections.
    with sock:
        _migrate_once(config)
        return _supervise(config, port, workers, drain_seconds)


def _log_start(config: Config, port: int, workers: int) -> None:
    server = config.server
    routes = "; ".join(f"{name} -> {', '.join(r.targets)}" for name, r in config.routes.items())
    logger.info(
        "failover listening on http://%s:%d (%d worker%s, auth %s, state %s); routes: %s",
        server.host if ":" not in server.host else f"[{server.host}]",
        port,
        workers,
        "" if workers == 1 else "s",
        "on" if server.api_keys else "off",
        config.state.backend,
        routes or "none (deployments by name only)",
    )


# -- one worker -----------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn's server, draining the app on the first signal, and exiting quietly after it.

    uvicorn re-raises the signals it caught once it has shut down (so that the process dies of
    them); ``failover serve`` rather exits 0 after a clean drain.
    """

    def __init__(self, config: uvicorn.Config, app: GatewayApp) -> None:
        super().__init__(config)
        self._app = app
        self.on_started: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        # What start-up built (modules, config, routes, clients) lives as long as the process:
        # frozen, the collector stops walking it again and again. Measured with wrk at 32
        # connections: the slowest collections fell from ~70 ms to ~30 ms and throughput rose
        # by a fifth.
        gc.collect()
        gc.freeze()
        if self.on_started is not None:
            self.on_started()  # now the sockets listen: the start line may say so

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.begin_drain()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _worker(
    config: Config, port: int, drain_seconds: float | None, level: int, number: int, workers: int
) -> None:
    """Worker ``number`` of ``--workers N``: its own socket on the shared port."""
    configure_logging(level, _LOG_FORMAT)
    sock = bind_socket(config.server.host, port, reuse_port=True)
    with sock:
        # The first worker says where the gateway listens; the others would only repeat it.
        run = run_server(
            config, [sock], drain_seconds=drain_seconds, workers=workers, announce=number == 1
        )
        uvloop.run(run)


# -- several workers ------------------------------------------------------------------------


def _migrate_once(config: Config) -> None:
    """Run the request log's migrations once, before the workers would all try at once."""

    try:
        uvloop.run(migrate_store(config))
    except StoreError as exc:
        # A store that is down must not keep the gateway from serving; each worker tries again.
        logger.warning("request log migrations not run (%s); the workers will retry", exc)


def _supervise(config: Config, port: int, workers: int, drain_seconds: float | None) -> int:
    """Start the workers, forward SIGTERM/SIGINT to them, and wait for them to drain."""
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    processes = [
        context.Process(
            target=_worker,
            args=(config, port, drain_seconds, level, number, workers),
            name=f"failover-worker-{number}",
        )
        for number in range(1, workers + 1)
    ]
    stopping = threading.Event()

    def stop(sig: int, frame: FrameType | None) -> None:
        stopping.set()

    original = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            process.start()
        while not stopping.is_set():
            ended = multiprocessing.connection.wait([p.sentinel for p in processes], timeout=0.2)
            if ended and not stopping.is_set():
                dead = [p for p in processes if not p.is_alive()]
                logger.error(
                    "worker %s exited with code %s; stopping the others",
                    dead[0].name,
                    dead[0].exitcode,
                )
                break
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()  # SIGTERM: the worker drains
        bound = (drain_bound(config) if drain_seconds is None else drain_seconds) + 10.0
        for process in processes:
            process.join(bound)
            if process.is_alive():
                logger.error("worker %s did not drain in time; killing it", process.name)
                process.kill()
                process.join()
        for sig, handler in original.items():
            signal.signal(sig, handler)
    codes = [process.exitcode for process in processes]
    return 0 if stopping.is_set() and all(code == 0 for code in codes) else 1
