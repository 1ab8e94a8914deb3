"""Runs the application under Uvicorn on one socket, printing its address."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys

from ..errors import ConfigError

__all__ = ["serve", "bind"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address this machine knows ({exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(2048)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _Stop:
    """Ctrl-C and SIGTERM stop the server (it finishes the requests in flight; a second
    Ctrl-C stops at once) and let :func:`serve` return. Installed before the address is
    printed, so a signal sent as soon as it appears is not missed; Uvicorn's own handling
    would raise the signal again after its shutdown, ending the process without our last
    line and with a signal's exit status."""

    def __init__(self, server):
        self.server = server
        self.by: str | None = None

    def __call__(self, sig, frame) -> None:
        self.by = signal.Signals(sig).name
        self.server.force_exit = self.server.should_exit and sig == signal.SIGINT
        self.server.should_exit = True

    @contextlib.contextmanager
    def installed(self):
        before = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)


def _server(config):
    """A Uvicorn server that leaves the signals to :class:`_Stop`."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return Server(config)


def serve(model_path, host: str = "127.0.0.1", port: int = 8000, device=None, log=None) -> int:
    """Serve ``model_path`` until Ctrl-C or SIGTERM (Uvicorn finishes the requests in
    flight, then returns); prints ``serving MODEL on ADDRESS`` once listening."""
    import uvicorn

    from .app import create_app

    app = create_app(model_path, device)
    sock = bind(host, port)
    summary = app.state.recogniser.summary
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = _server(config)
    if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
        print(
            f"mlp-xp serve: warning: listening beyond this machine ({host}); the server has "
            "no authentication, so anyone who can reach the port can use it",
            file=sys.stderr,
        )
    with _Stop(server).installed() as stop:
        print(
            f"serving {summary['file']} ({summary['network']}, {summary['backend']} "
            f"{summary['device']}) on {address(sock)}  (Ctrl-C to stop)",
            file=log or sys.stdout,
            flush=True,
        )
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
    print(f"stopped ({stop.by or 'shut down'})", file=log or sys.stdout, flush=True)
    return 0
