"""The ASGI app and its server: FastAPI routes behind an API-key check and a one-line-per-request log,
run by uvicorn. SIGTERM (or Ctrl-C) aborts the generations in flight and stops within seconds."""

from __future__ import annotations

import ipaddress
import logging
import secrets
import signal
import sys
import time
from collections.abc import Callable

from ..core.errors import WorkbenchError
from .engine import Engine

log = logging.getLogger("workbench.server")
SHUTDOWN_GRACE_SECONDS = 2


class RequestLog:
    """ASGI middleware: one log line per request once its response (streamed or not) has ended."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.monotonic()
        status = {"code": 0}

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            state = scope.get("state", {})
            client = scope.get("client") or ("-", 0)
            extra = ""
            if "model" in state:
                extra = f" model={state['model']} prompt_tokens={state.get('prompt_tokens', 0)}"
                if "completion_tokens" in state:
                    extra += f" completion_tokens={state['completion_tokens']}"
            log.info('%s "%s %s" %s%s %.2fs', client[0], scope["method"], scope["path"], status["code"] or "-",
                     extra, time.monotonic() - started)


class ApiKeyCheck:
    """ASGI middleware: with a key set, every /v1 request needs `Authorization: Bearer KEY` (else 401)."""

    def __init__(self, app, api_key: str):
        self.app, self.api_key = app, api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"")
            token = given[7:] if given[:7].lower() == b"bearer " else b""
            if not secrets.compare_digest(token, self.api_key):
                from .api_errors import error_response

                message = "Incorrect API key provided." if token else "Missing API key (Authorization: Bearer KEY)."
                response = error_response(401, message, None, "invalid_api_key")
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(engine: Engine, api_key: str | None = None):
    from fastapi import FastAPI

    from .api_errors import install_error_handlers
    from .routes import build_router

    app = FastAPI(title="workbench", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(build_router(engine))

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(engine.models)}

    if api_key:
        app.add_middleware(ApiKeyCheck, api_key=api_key)
    app.add_middleware(RequestLog)
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _configure_logging() -> None:
    logger = logging.getLogger("workbench.server")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(ctx, models: list[str], host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          device: str | None = None, dtype: str | None = None, warn: Callable[[str], None] = print,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the registered `models` until SIGTERM / Ctrl-C. on_ready(url) runs once the port is open."""
    import uvicorn

    from ..core.export.hf import quiet_torchao
    from ..core.models import quiet_transformers

    if not models:
        raise WorkbenchError("name at least one model to serve")
    if not 0 <= port <= 65535:
        raise WorkbenchError(f"--port must be between 0 and 65535 (got {port})")
    if not is_loopback(host) and not api_key:
        warn(f"warning: serving on {host} without --api-key: anyone who can reach this machine can use it")
    _configure_logging()
    quiet_transformers()
    quiet_torchao()  # transformers imports torchao (when installed) on every load; its CUDA-only warnings
    engine = Engine(ctx, models, device=device, dtype=dtype)
    config = uvicorn.Config(create_app(engine, api_key), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # SIGTERM / SIGINT: abort generation now, then close; a second Ctrl-C forces it. Unlike
            # uvicorn's own handler this does not re-raise the signal afterwards: a stop is a clean exit.
            engine.stop()
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started and on_ready is not None:
                bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
                shown = f"[{host}]" if ":" in host else host
                on_ready(f"http://{shown}:{bound}/v1")

    server = _Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind; say so in one line below
        pass
    finally:
        engine.stop()
    if not server.started:
        raise WorkbenchError(f"cannot listen on {host}:{port} (is the port in use?)")
