"""The local web service (FastAPI): ``genimage serve`` runs it with uvicorn.

Endpoints (JSON unless noted; errors are ``{"error": message}`` with status 400):

* ``GET /`` — a page to generate and edit in the browser;
* ``GET /api/health`` — version, device, default model;
* ``GET /openapi.json`` — the API's schema;
* ``GET /api/models`` — the bundled models with their conditioning and sampling defaults;
* ``POST /api/generate`` — body :class:`GenerateRequest`; returns the images as base64 PNGs
  with their records;
* ``GET /api/generate.png?prompt=...&seed=...`` — one image as ``image/png`` (for ``curl`` or
  an ``<img>`` tag);
* ``POST /api/edit`` — multipart form: ``image`` file, optional ``mask`` file, and the fields
  of :class:`GenerateRequest` plus ``strength``, ``extend``, ``resample``, ``upscale``.

Every PNG carries its generation record, so ``genimage replay`` checks a download bit for
bit. Requests are served one generation at a time (:class:`~genimage.serve.studio.Studio`).
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from genimage import __version__
from genimage.errors import GenimageError
from genimage.serve.page import PAGE
from genimage.serve.studio import Studio, device_name


class GenerateRequest(BaseModel):
    """A generation request; unset sampling fields take the model's defaults."""

    model: Optional[str] = Field(None, description="bundled model name or model folder (default: the service's)")
    prompt: Optional[str] = Field(None, description="text prompt (text models)")
    label: Optional[str] = Field(None, description="class name or number (class models; default: cycle the classes)")
    negative: Optional[str] = Field(None, description="negative prompt (text models)")
    seed: int = Field(0, description="seed of the first image; image i uses seed + i")
    n: int = Field(1, description="number of images")
    sampler: Optional[str] = None
    schedule: Optional[str] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None


def _payload(made: list, seconds: float, model: str) -> dict[str, Any]:
    return {"model": model, "seconds": round(seconds, 3), "images": [m.to_json() for m in made]}


def create_app(studio: Studio | None = None) -> FastAPI:
    """The service around ``studio`` (default: a :class:`Studio` on the bundled shapes model)."""
    studio = studio or Studio()
    # No /docs or /redoc: their pages load scripts from a CDN, and genimage runs offline.
    # The schema itself is at /openapi.json.
    app = FastAPI(title="genimage", version=__version__, docs_url=None, redoc_url=None,
                  description="Generate and edit images with genimage models; every PNG carries its record.")

    @app.exception_handler(GenimageError)
    async def genimage_error(request: Request, exc: GenimageError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "device": device_name(studio.device),
                "default_model": studio.default_model, "max_images": studio.max_images}

    @app.get("/api/models")
    async def models() -> list[dict[str, Any]]:
        return await run_in_threadpool(studio.models)

    @app.post("/api/generate")
    async def generate(req: GenerateRequest) -> dict[str, Any]:
        made, seconds = await run_in_threadpool(lambda: studio.run(**req.model_dump()))
        return _payload(made, seconds, req.model or studio.default_model)

    @app.get("/api/generate.png")
    async def generate_png(model: Optional[str] = None, prompt: Optional[str] = None, label: Optional[str] = None,
                           negative: Optional[str] = None, seed: int = 0, sampler: Optional[str] = None,
                           schedule: Optional[str] = None, steps: Optional[int] = None,
                           guidance: Optional[float] = None) -> Response:
        made, _ = await run_in_threadpool(lambda: studio.run(
            model=model, prompt=prompt, label=label, negative=negative, seed=seed, n=1, sampler=sampler,
            schedule=schedule, steps=steps, guidance=guidance))
        return Response(content=made[0].png, media_type="image/png")

    @app.post("/api/edit")
    async def edit(image: UploadFile = File(...), mask: Optional[UploadFile] = File(None),
                   model: Optional[str] = Form(None), prompt: Optional[str] = Form(None),
                   label: Optional[str] = Form(None), negative: Optional[str] = Form(None), seed: int = Form(0),
                   n: int = Form(1), strength: Optional[float] = Form(None), extend: Optional[str] = Form(None),
                   resample: int = Form(1), upscale: Optional[int] = Form(None),
                   sampler: Optional[str] = Form(None), schedule: Optional[str] = Form(None),
                   steps: Optional[int] = Form(None), guidance: Optional[float] = Form(None)) -> dict[str, Any]:
        image_bytes = await image.read()
        mask_bytes = await mask.read() if mask is not None and mask.filename else None

        def work():
            spec = studio.edit_spec(model, image_bytes, mask_bytes, extend, strength, resample, upscale)
            return studio.run(model=model, prompt=prompt, label=label, negative=negative, seed=seed, n=n,
                              sampler=sampler, schedule=schedule, steps=steps, guidance=guidance, edit=spec)

        made, seconds = await run_in_threadpool(work)
        return _payload(made, seconds, model or studio.default_model)

    return app
