"""CLI: ``liquidgen serve`` — the HTTP API and web page (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from liquidgen.errors import ConfigError

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _positive_int(text: str) -> int:
    from liquidgen.utils.args import parse_int

    try:
        value = parse_int(text, "value")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    from liquidgen.utils.args import check_finite_float

    try:
        return check_finite_float(text, "value", positive=True)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def settings_from_args(args: argparse.Namespace):  # -> ServerSettings
    from liquidgen.serving.schemas import ServerSettings

    return ServerSettings(
        model_id=args.model_id,
        api_key=args.api_key,
        max_n=args.max_n,
        max_queue=args.max_queue,
        max_rows=args.max_rows,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        request_timeout=args.timeout,
        max_prompt_chars=args.max_prompt_chars,
        max_tokens=args.max_tokens,
        max_upload_megapixels=args.max_upload_megapixels,
    )


def _run_serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from liquidgen.assets import TINY_MODEL, shipped
    from liquidgen.inference.pipeline import Pipeline
    from liquidgen.serving.app import create_app
    from liquidgen.utils.device import resolve_device, resolve_dtype

    path = Path(args.model) if args.model is not None else shipped(TINY_MODEL)
    if not path.is_dir():
        raise ConfigError(f"{path}: model folder not found")
    if args.max_rows < 2:
        raise ConfigError("--max-rows must be >= 2 (an image with guidance takes two rows)")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not is_loopback(args.host) and args.api_key is None:
        print(
            f"liquidgen serve: warning: listening on {args.host} without --api-key",
            file=sys.stderr,
        )
    settings = settings_from_args(args)
    app = create_app(settings, lambda: Pipeline.from_pretrained(path, device=device, dtype=dtype))
    print(f"liquidgen serve: {path} at http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from liquidgen.inference.cli import _add_model_args
    from liquidgen.serving.schemas import ServerSettings

    d = ServerSettings()
    p = subparsers.add_parser(
        "serve",
        help="serve the model over HTTP (OpenAI-compatible API + web page)",
        description="Serve a checkpoint over HTTP: POST /v1/images/generations, "
        "POST /v1/chat/completions (streaming too), GET /v1/models, /health, /metrics and a web "
        "page at /. All users' requests are decoded together, one forward per step "
        "(docs/serving.md). Listens on the loopback interface unless --host says otherwise.",
    )
    _add_model_args(p)
    p.add_argument(
        "--host",
        default=LOOPBACK,
        help=f"interface (default {LOOPBACK}: this machine only; 0.0.0.0 for all)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' (all routes but /health and the page)",
    )
    p.add_argument(
        "--model-id", default=d.model_id, help=f"model name in the API (default {d.model_id})"
    )
    p.add_argument(
        "--max-n",
        type=_positive_int,
        default=d.max_n,
        help=f"images per request at most (default {d.max_n})",
    )
    p.add_argument(
        "--max-queue",
        type=_positive_int,
        default=d.max_queue,
        help=f"requests waiting before 429 (default {d.max_queue})",
    )
    p.add_argument(
        "--max-rows",
        type=_positive_int,
        default=d.max_rows,
        help=f"rows in one forward; an image with guidance takes 2 (default {d.max_rows})",
    )
    p.add_argument(
        "--max-body-mb",
        type=_positive_float,
        default=d.max_body_bytes / 2**20,
        help="largest request body in MiB (default 8)",
    )
    p.add_argument(
        "--max-prompt-chars",
        type=_positive_int,
        default=d.max_prompt_chars,
        help=f"longest prompt/message (default {d.max_prompt_chars})",
    )
    p.add_argument(
        "--max-tokens",
        type=_positive_int,
        default=d.max_tokens,
        help=f"cap of a chat reply's max_tokens (default {d.max_tokens})",
    )
    p.add_argument(
        "--max-upload-megapixels",
        type=_positive_float,
        default=d.max_upload_megapixels,
        help=f"largest uploaded image (default {d.max_upload_megapixels:g} MP)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=d.request_timeout,
        help=f"seconds a request may take, queue included (default {d.request_timeout:g})",
    )
    p.add_argument(
        "--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's)"
    )
    p.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=_run_serve)
