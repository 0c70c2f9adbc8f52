"""``python -m dcf.serve MODEL_DIR [--host 127.0.0.1] [--port 8000]``: serve a saved model
(see :mod:`dcf.serve`). Prints ``serving MODEL_DIR on http://HOST:PORT`` once it listens
(``--port 0``: a free port, the one printed)."""

from __future__ import annotations

import argparse
import socket
import sys

from ..errors import ConfigError, DataError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dcf.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a folder written by model.save")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (loopback by default)")
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be between 0 and 65535, not {args.port}")
    if not args.host.strip():
        p.error("--host is empty (an unset variable?): give an address, 127.0.0.1 by default")
    try:
        return _serve(args)
    except KeyboardInterrupt:  # Ctrl-C while the model loads: no traceback
        return 130


def _serve(args) -> int:
    try:
        import uvicorn

        from .app import make_app
    except ImportError as exc:
        print(f"dcf.serve: error: {exc.name} is not installed: pip install 'dcf[serve]'", file=sys.stderr)
        return 2
    try:
        app = make_app(args.model)
    except (ConfigError, DataError, OSError, ValueError) as exc:
        print(f"dcf.serve: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on such sockets (proto 0 left Nagle's
    # algorithm on: 44 ms more for every request after the first on a kept-alive connection)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)  # requests queue from now on, while the server starts
    except (OSError, OverflowError) as exc:
        why = getattr(exc, "strerror", None) or exc
        print(f"dcf.serve: error: cannot listen on {args.host}:{args.port}: {why}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        print(f"dcf.serve: listening on every interface ({host}): other machines can reach it", file=sys.stderr)
    print(f"serving {args.model} on http://{f'[{host}]' if ':' in host else host}:{port}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
