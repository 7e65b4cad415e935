"""``genimage serve``: the local web service."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors


@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only; any other "
                                           "needs --token)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    model: Annotated[str, typer.Option(help="Default model of requests that name none")] = "shapes",
    model_dir: Annotated[Optional[list[str]], typer.Option(
        "--model-dir", help="Also serve the model (or training run) in FOLDER as NAME: NAME=FOLDER; repeatable", show_default="none: the bundled models")] = None,
    token: Annotated[Optional[str], typer.Option(envvar="GENIMAGE_API_TOKEN", show_default="none: $GENIMAGE_API_TOKEN",
                                                 help="Bearer token every route but /api/health needs "
                                                      "(required off loopback; at least 16 characters)")] = None,
    allowed_host: Annotated[Optional[list[str]], typer.Option(
        "--allowed-host", help="Another Host name (NAME or NAME:PORT) to answer to, e.g. behind a proxy; repeatable", show_default="none")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    max_images: Annotated[int, typer.Option(help="Most images one request may ask for")] = 16,
    max_steps: Annotated[int, typer.Option(help="Most sampler steps one request may ask for")] = 200,
    max_nfe: Annotated[int, typer.Option(help="Most network evaluations one job may spend")] = 2000,
    max_seconds: Annotated[float, typer.Option(help="Wall time after which a running job fails")] = 300.0,
    queue_size: Annotated[int, typer.Option(help="Jobs that may wait; more get 429 with Retry-After")] = 32,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload request (image, mask and fields) in MB")] = 8.0,
    header_timeout: Annotated[float, typer.Option(help="Seconds a client may take to send a request's headers "
                                                       "(slow clients get 408 and are disconnected)")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a client may take to send a request's body after "
                                                     "its headers (then 408)")] = 60.0,
    watermark: Annotated[bool, typer.Option("--watermark/--no-watermark",
                                            help="Mark returned images invisibly where they are large enough")] = True,
) -> None:
    """Run the local web service: a page at http://HOST:PORT/ and a JSON API under /api
    (schema at /openapi.json). Every PNG it returns carries its generation record. Requests
    from other sites and for other Host names are refused; off loopback a token is needed."""
    import uvicorn

    from genimage.errors import GenimageError
    from genimage.serve.app import create_app
    from genimage.serve.guard import AccessPolicy
    from genimage.serve.limits import Limits
    from genimage.serve.studio import Studio, device_name

    if not 0 < port < 65536:
        raise GenimageError(f"--port must be in 1..65535, got {port}")
    if max_images < 1:
        raise GenimageError(f"--max-images must be at least 1, got {max_images}")
    dirs: dict[str, str] = {}
    for item in model_dir or []:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise GenimageError(f"--model-dir takes NAME=FOLDER, got {item!r}")
        dirs[name] = folder
    policy = AccessPolicy.for_bind(host, port, token=token or None, extra_hosts=allowed_host or [])
    limits = Limits(max_images=max_images, max_steps=max_steps, max_nfe=max_nfe, max_seconds=max_seconds, queue_size=queue_size,
                    max_upload_bytes=int(max_upload_mb * 1024 * 1024), header_seconds=header_timeout,
                    body_seconds=body_timeout)
    studio = Studio(model, device, watermark=watermark, model_dirs=dirs, limits=limits)
    studio.pipeline(None, startup=True)  # load the default model now: a bad name fails here, not on the first request
    app = create_app(studio, policy)
    jobs = app.state.jobs

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # SIGINT / SIGTERM: stop jobs first, so connections end
            jobs.close(timeout=0)
            super().handle_exit(sig, frame)

    typer.echo(f"genimage serve: http://{host}:{port}/ (default model {model}, {device_name(studio.device)}; "
               f"models {', '.join(studio.catalog)}{'; token required' if policy.token else ''}); "
               "API schema at /openapi.json; Ctrl-C stops", err=False)
    from genimage.serve.protocol import read_deadline_protocol

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                          timeout_keep_alive=min(5, max(1, int(header_timeout))),
                          http=read_deadline_protocol(header_timeout))).run()
