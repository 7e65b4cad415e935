"""``genimage serve``: the local web service."""

from __future__ import annotations

from typing import Annotated

import typer

from genimage.cli.common import handle_errors


@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    model: Annotated[str, typer.Option(help="Default model of requests that name none")] = "shapes",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    max_images: Annotated[int, typer.Option(help="Most images one request may ask for")] = 16,
    watermark: Annotated[bool, typer.Option("--watermark/--no-watermark",
                                            help="Mark returned images invisibly where they are large enough")] = True,
) -> None:
    """Run the local web service: a page at http://HOST:PORT/ and a JSON API under /api
    (schema at /openapi.json). Every PNG it returns carries its generation record."""
    import uvicorn

    from genimage.errors import GenimageError
    from genimage.serve.app import create_app
    from genimage.serve.studio import Studio, device_name

    if not 0 < port < 65536:
        raise GenimageError(f"--port must be in 1..65535, got {port}")
    if max_images < 1:
        raise GenimageError(f"--max-images must be at least 1, got {max_images}")
    studio = Studio(model, device, max_images, watermark=watermark)
    studio.pipeline(None)  # load the default model now: a bad name fails here, not on the first request
    typer.echo(f"genimage serve: http://{host}:{port}/ (default model {model}, {device_name(studio.device)}); "
               "API schema at /openapi.json; Ctrl-C stops")
    uvicorn.run(create_app(studio), host=host, port=port, log_level="warning")
