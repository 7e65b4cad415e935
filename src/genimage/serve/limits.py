"""The service's limits: what one request may ask for, checked before any compute.

Every limit is a field of :class:`Limits`; ``genimage serve`` sets them from its options and
the request models of :mod:`genimage.serve.schemas` plus :class:`~genimage.serve.studio.Studio`
enforce them, so a request over a limit gets a 4xx that names the field and the bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds on requests and jobs.

    Attributes:
        max_images: Most images one request (``n``) may ask for.
        max_steps: Most sampler steps (``steps``) a request may ask for.
        max_resample: Largest RePaint ``resample`` count.
        max_nfe: Most network evaluations one job may spend (steps x resample x the sampler's
            evaluations per step); checked before the job is queued where it can be
            estimated, and counted while it runs.
        max_seconds: Wall time after which a running job fails (checked between steps).
        max_prompt_chars: Longest ``prompt`` / ``negative`` / ``label`` text.
        max_body_bytes: Largest JSON request body.
        max_upload_bytes: Largest multipart request (the image, mask and fields together),
            enforced while the body streams in.
        max_pixels: Largest ``width x height`` of an uploaded image, read from its header
            before it is decoded (decompression bombs).
        decode_concurrency: Uploaded images decoded at the same time (bounds their memory).
        queue_size: Jobs waiting to run; one more gets 429 with ``Retry-After``.
        keep_jobs: Finished jobs kept for ``GET /api/jobs/{id}`` (oldest dropped first).
        header_seconds: A request's headers must be complete this many seconds after its
            connection opened (or the previous response on it ended), else 408 and the
            connection is closed (slow clients; :mod:`genimage.serve.protocol`).
        body_seconds: A request's body must be complete this many seconds after its
            headers, else 408 and the connection is closed.
    """

    max_images: int = 16
    max_steps: int = 200
    max_resample: int = 10
    max_nfe: int = 2000
    max_seconds: float = 300.0
    max_prompt_chars: int = 1000
    max_body_bytes: int = 64 * 1024
    max_upload_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    decode_concurrency: int = 2
    queue_size: int = 32
    keep_jobs: int = 256
    header_seconds: float = 10.0
    body_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                from genimage.errors import GenimageError

                raise GenimageError(f"the service limit {name} must be a positive number, got {value!r}")
