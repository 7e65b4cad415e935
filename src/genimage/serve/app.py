"""The local web service (FastAPI): ``genimage serve`` runs it with uvicorn.

Security model (:mod:`genimage.serve.guard`):

* It listens on 127.0.0.1 unless told otherwise; binding to any other address needs a token
  (``--token`` or ``GENIMAGE_API_TOKEN``), and then every route but ``/api/health`` and the
  static page needs ``Authorization: Bearer TOKEN``.
* A request whose ``Host`` is not one the service answers to (DNS rebinding), whose
  ``Origin`` is present and not the service's own (``Origin: null`` included), or whose
  ``Sec-Fetch-Site`` names another site, is refused with 403. The GET that computes
  (``/api/generate.png``) also needs the header ``X-Genimage: 1``, which a page on another
  site cannot send (no CORS is ever granted), so an ``<img>`` tag elsewhere starts nothing.
* No route takes a file-system path: ``model`` is a name from ``GET /api/models`` (the bundled
  models plus those the operator serves with ``--model-dir NAME=FOLDER``); errors never say
  whether a folder exists.
* Every request is validated before any compute (:mod:`genimage.serve.schemas`,
  :class:`~genimage.serve.limits.Limits`): strict JSON types, no unknown fields, bounds on
  every number, text lengths, the body size (checked while the body streams in), uploaded
  images' pixel count read from their header before decoding, and a bounded number of
  decodes at a time. Jobs stop at a cap on network evaluations and on wall time.
* Responses are JSON (or PNG); ``<``, ``>`` and ``&`` in JSON are written as ``\\u003c`` ...,
  so no server text is ever HTML; the page inserts server text with ``textContent`` only.

Endpoints (JSON unless noted; errors are ``{"error": message}``: 400 for a request the
service cannot do, 422 for one that does not fit the schema, 401 / 403 as above, 404 for an
unknown job, 413 for a body too large, 429 with ``Retry-After`` when the queue is full, 503
while shutting down):

* ``GET /`` (and ``/page.js``) — a page to generate and edit in the browser;
* ``GET /api/health`` — version, device, default model, queue state;
* ``GET /openapi.json`` — the API's schema;
* ``GET /api/models`` — the served models with their conditioning and sampling defaults;
* ``POST /api/jobs`` — body :class:`~genimage.serve.schemas.JobRequest`: a generation job;
  ``POST /api/jobs/edit`` — multipart (``image`` file, optional ``mask`` file, the fields of
  :class:`~genimage.serve.schemas.EditFields`): an edit job (img2img, inpaint, outpaint,
  upscale); ``POST /api/jobs/replay`` — multipart ``png`` (a genimage PNG; for an edit also
  its ``image`` and ``mask``): regenerate it from its record. Each answers 202 at once with
  the job's ``id``, ``state`` and queue ``position``;
* ``GET /api/jobs/{id}`` — state (``queued``, ``running``, ``done``, ``failed`` with
  ``reason``, ``cancelled``), ``step`` / ``total`` / ``progress``, and when done the
  ``images`` (base64 PNGs with their records, and their ``url``);
* ``GET /api/jobs/{id}/events`` — the same as server-sent events: ``progress`` on every
  change, then one ``end``;
* ``GET /api/jobs/{id}/images/{k}.png`` — image ``k`` of a finished job (``image/png``);
* ``DELETE /api/jobs/{id}`` — cancel a queued job, or stop a running one between two steps;
* ``POST /api/generate`` — body :class:`~genimage.serve.schemas.GenerateRequest`, and
  ``POST /api/edit`` — the multipart of ``/api/jobs/edit``: synchronous wrappers (a job,
  cancelled if the client disconnects) returning the images as base64 PNGs with records;
* ``GET /api/generate.png?label=3&seed=1`` with ``X-Genimage: 1`` — one image as
  ``image/png``;
* ``POST /api/detect`` — multipart ``image``: its record, invisible mark and the learned
  detector's p(generated) (:mod:`genimage.cli.detect`).

Every PNG carries its generation record, so ``genimage replay`` checks a download bit for
bit. Jobs run one at a time on one worker thread (:mod:`genimage.serve.jobs`).
"""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from genimage import __version__
from genimage.errors import GenimageError
from genimage.serve.guard import AccessPolicy, BodyCap, Guard
from genimage.serve.jobs import Job, JobQueue, QueueFull, ShuttingDown
from genimage.serve.page import PAGE, PAGE_JS
from genimage.serve.schemas import EditFields, GenerateRequest, JobRequest, NoFields, Sampling, form_fields
from genimage.serve.studio import Studio, device_name

_HTML_SPECIAL = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


class SafeJSONResponse(JSONResponse):
    """JSON with ``<``, ``>`` and ``&`` escaped, so no response ever reads as HTML, and no NaN."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.translate(_HTML_SPECIAL).encode("utf-8")


class PngQuery(Sampling):
    """Query of ``GET /api/generate.png`` (one image; numbers read from text)."""

    model_config = ConfigDict(extra="forbid", strict=False)


def web_words(message: str) -> str:
    """A library message in the web's words: command-line options become field names."""
    message = message.replace("--init", "image")
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), message)


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for e in errors[:5]:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        parts.append(f"{field}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> SafeJSONResponse:
    return SafeJSONResponse({"error": message}, status_code=status, headers=headers)


def _form_schema(fields: type, files: dict[str, bool]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a multipart route: the file fields plus ``fields``' own."""
    schema = fields.model_json_schema()
    props = {name: {"type": "string", "format": "binary"} for name in files}
    for name, prop in schema.get("properties", {}).items():
        props[name] = {k: v for k, v in prop.items() if k != "title"}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": props, "required": [k for k, req in files.items() if req],
        "additionalProperties": False}}}}}


def create_app(studio: Studio | None = None, policy: AccessPolicy | None = None,
               jobs: JobQueue | None = None) -> FastAPI:
    """The service around ``studio`` (default: a :class:`Studio` on the bundled shapes model).

    Args:
        studio: Models and limits.
        policy: Who may call it (default: loopback on port 8000, no token; see
            :meth:`AccessPolicy.for_bind`).
        jobs: The job queue (default: one sized by ``studio.limits``).
    """
    studio = studio or Studio()
    lim = studio.limits
    policy = policy or AccessPolicy.for_bind("127.0.0.1", 8000)
    jobs = jobs or JobQueue(lim.queue_size, lim.keep_jobs, lim.max_seconds, lim.max_nfe)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(jobs.reopen)  # after an earlier shutdown of the same app (test clients)
        yield
        await run_in_threadpool(jobs.close)  # cancel waiting jobs, stop the running one between steps

    # No /docs or /redoc: their pages load scripts from a CDN, and genimage runs offline.
    app = FastAPI(title="genimage", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  default_response_class=SafeJSONResponse,
                  description="Generate and edit images with genimage models; every PNG carries its record.")
    app.state.studio, app.state.jobs, app.state.policy = studio, jobs, policy
    upload_cap = lim.max_upload_bytes
    app.add_middleware(BodyCap, json_cap=lim.max_body_bytes, upload_cap=upload_cap,
                       upload_paths=frozenset({"/api/edit", "/api/jobs/edit", "/api/jobs/replay", "/api/detect"}),
                       body_seconds=lim.body_seconds)
    app.add_middleware(Guard, policy=policy)  # added last: runs first

    @app.exception_handler(GenimageError)
    async def genimage_error(request: Request, exc: GenimageError) -> Response:
        if isinstance(exc, QueueFull):
            return _error(429, str(exc), {"Retry-After": str(exc.retry_after)})
        if isinstance(exc, ShuttingDown):
            return _error(503, str(exc), {"Retry-After": "10"})
        return _error(400, web_words(str(exc)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(422, _validation_message(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def form_validation_error(request: Request, exc: ValidationError) -> Response:
        return _error(422, _validation_message(exc.errors(include_input=False)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return _error(500, "internal error; see the server's log")

    # ------------------------------------------------------------------------------ helpers
    async def read_form(request: Request, model: type, files: tuple[str, ...], required: tuple[str, ...]):
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise GenimageError("send the fields as multipart/form-data (with the image file)")
        try:
            form = await request.form(max_files=len(files), max_fields=40, max_part_size=4 * lim.max_prompt_chars + 64)
        except HTTPException:
            raise
        except Exception:  # noqa: BLE001 - python-multipart's errors mean a malformed body
            raise GenimageError("cannot read the multipart form (too many or too large fields, or malformed)") \
                from None
        fields = form_fields(form, model, files)
        uploads: dict[str, bytes | None] = {}
        for name in files:
            item = form.get(name)
            uploads[name] = await item.read() if item is not None and not isinstance(item, str) else None
            if name in required and not uploads[name]:
                raise GenimageError(f"{name}: send the image file to work on")
        await form.close()
        return fields, uploads

    def accepted(job: Job) -> Response:
        return SafeJSONResponse(status_code=202, content={
            **job.to_json(jobs.position(job), images=False), "url": f"/api/jobs/{job.id}",
            "events": f"/api/jobs/{job.id}/events"})

    async def submit(prepare) -> Job:
        work = await run_in_threadpool(prepare)
        return jobs.submit(work)

    async def wait(request: Request, job: Job) -> None:
        """Until ``job`` ends; cancels it if the client goes away first."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        job.watchers.append((loop, event))
        try:
            while not job.ended.is_set():
                event.clear()
                if await request.is_disconnected():
                    jobs.cancel(job, "the client disconnected")
                    return
                try:
                    await asyncio.wait_for(event.wait(), 0.5)
                except TimeoutError:
                    pass
        finally:
            job.watchers.remove((loop, event))

    def outcome(job: Job) -> None:
        if job.state == "done":
            return
        if job.state == "cancelled":
            raise ShuttingDown(job.reason or "cancelled") if jobs.closed else GenimageError(job.reason or "cancelled")
        raise GenimageError(job.reason or "the job failed")

    def payload(job: Job) -> dict[str, Any]:
        seconds = round((job.finished or 0) - (job.started or 0), 3)
        return {"model": job.model, "seconds": seconds, "warnings": job.warnings,
                "images": [m.to_json() for m in job.results]}

    def lookup(job_id: str) -> Job:
        job = jobs.get(job_id) if len(job_id) <= 64 else None
        if job is None:
            raise HTTPException(404, "no such job (finished jobs are kept for a while only)")
        return job

    # ------------------------------------------------------------------------------ routes
    @app.get("/", response_class=Response)
    async def page() -> Response:
        return Response(PAGE, media_type="text/html; charset=utf-8")

    @app.get("/page.js", response_class=Response)
    async def page_js() -> Response:
        return Response(PAGE_JS, media_type="text/javascript; charset=utf-8")

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "device": device_name(studio.device),
                "default_model": studio.default_model, "max_images": studio.max_images,
                "token_required": policy.token is not None, "jobs": jobs.stats()}

    @app.get("/api/models")
    async def models() -> list[dict[str, Any]]:
        return await run_in_threadpool(studio.models)

    @app.post("/api/jobs", status_code=202)
    async def create_job(req: JobRequest) -> Response:
        fields = req.model_dump(exclude={"kind"})
        return accepted(await submit(lambda: studio.prepare(**fields)))

    edit_body = _form_schema(EditFields, {"image": True, "mask": False})

    @app.post("/api/jobs/edit", status_code=202, openapi_extra=edit_body)
    async def create_edit_job(request: Request) -> Response:
        fields, files = await read_form(request, EditFields, ("image", "mask"), ("image",))
        return accepted(await submit(lambda: studio.prepare(**fields.model_dump(), **files)))

    replay_body = _form_schema(NoFields, {"png": True, "image": False, "mask": False})

    @app.post("/api/jobs/replay", status_code=202, openapi_extra=replay_body)
    async def create_replay_job(request: Request) -> Response:
        _, files = await read_form(request, NoFields, ("png", "image", "mask"), ("png",))
        return accepted(await submit(lambda: studio.prepare_replay(files["png"], files["image"], files["mask"])))

    @app.get("/api/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        job = lookup(job_id)
        return job.to_json(jobs.position(job))

    @app.delete("/api/jobs/{job_id}")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        job = lookup(job_id)
        changed = jobs.cancel(job)
        return {**job.to_json(jobs.position(job), images=False), "cancelled": changed}

    @app.get("/api/jobs/{job_id}/images/{k}.png", response_class=Response)
    async def job_image(job_id: str, k: int) -> Response:
        job = lookup(job_id)
        if job.state != "done" or not 0 <= k < len(job.results):
            raise HTTPException(404, "no such image: the job is not done or has fewer images")
        return Response(job.results[k].png, media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="genimage-{job.results[k].seed}.png"'})

    @app.get("/api/jobs/{job_id}/events", response_class=StreamingResponse)
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        job = lookup(job_id)

        async def stream():
            loop, event = asyncio.get_running_loop(), asyncio.Event()
            job.watchers.append((loop, event))
            try:
                seen = -1
                while True:
                    event.clear()
                    if job.ended.is_set():
                        data = json.dumps(job.to_json(None)).translate(_HTML_SPECIAL)
                        yield f"event: end\ndata: {data}\n\n"
                        return
                    if job.version != seen:
                        seen = job.version
                        data = json.dumps(job.to_json(jobs.position(job), images=False)).translate(_HTML_SPECIAL)
                        yield f"event: progress\ndata: {data}\n\n"
                    try:
                        await asyncio.wait_for(event.wait(), 10)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": keep-alive\n\n"
            finally:
                job.watchers.remove((loop, event))

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/generate")
    async def generate(req: GenerateRequest, request: Request) -> dict[str, Any]:
        fields = req.model_dump()
        job = await submit(lambda: studio.prepare(**fields))
        await wait(request, job)
        outcome(job)
        return payload(job)

    @app.get("/api/generate.png", response_class=Response)
    async def generate_png(q: Annotated[PngQuery, Query()], request: Request) -> Response:
        fields = q.model_dump()
        if fields.get("n", 1) != 1:
            raise GenimageError("n: generate.png makes one image; use POST /api/generate for several")
        job = await submit(lambda: studio.prepare(**fields))
        await wait(request, job)
        outcome(job)
        return Response(content=job.results[0].png, media_type="image/png")

    @app.post("/api/edit", openapi_extra=edit_body)
    async def edit(request: Request) -> dict[str, Any]:
        fields, files = await read_form(request, EditFields, ("image", "mask"), ("image",))
        job = await submit(lambda: studio.prepare(**fields.model_dump(), **files))
        await wait(request, job)
        outcome(job)
        return payload(job)

    detect_body = _form_schema(NoFields, {"image": True})

    @app.post("/api/detect", openapi_extra=detect_body)
    async def detect(request: Request) -> dict[str, Any]:
        _, files = await read_form(request, NoFields, ("image",), ("image",))
        return await run_in_threadpool(studio.detect, files["image"])

    return app
