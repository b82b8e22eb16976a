"""`workbench serve MODEL [MODEL ...]`: an OpenAI-compatible HTTP API over registered models."""

from __future__ import annotations

import json
import os
import sys

from .common import add_json_flag, command, context, info


def register(subcommands) -> None:
    parser = command(subcommands, "serve", cmd_serve,
                     "serve models over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)")
    parser.add_argument("models", nargs="+", metavar="MODEL", help="registered models to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", default=None,
                        help="require `Authorization: Bearer KEY` (also $WORKBENCH_API_KEY)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", default=None, choices=["auto", "fp32", "bf16", "fp16"],
                        help="weights dtype (default: bf16 on GPUs that support it, else fp32)")
    add_json_flag(parser)


def cmd_serve(args) -> int:
    from ..server.app import serve

    ctx = context(args)
    api_key = args.api_key or os.environ.get("WORKBENCH_API_KEY") or None

    def ready(url: str) -> None:
        if args.json:
            print(json.dumps({"url": url, "models": list(dict.fromkeys(args.models))}), flush=True)
        info(f"serving {', '.join(dict.fromkeys(args.models))} at {url} (Ctrl-C or SIGTERM stops)")
        sys.stderr.flush()

    serve(ctx, args.models, host=args.host, port=args.port, api_key=api_key, device=args.device,
          dtype=args.dtype, warn=info, on_ready=ready)
    info("stopped")
    # The shutdown is complete (requests answered, logs flushed). Tearing down torch and the loaded models
    # at interpreter exit takes 10 s and more on a busy machine, so a stop would not be "within seconds".
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
