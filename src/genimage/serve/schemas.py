"""The request bodies the service accepts, validated before any work starts.

JSON bodies are validated strictly: no unknown fields, no ``true`` where a number belongs,
no string where a number belongs, finite floats only. Multipart forms carry every field as
text, so they are parsed the same way but with numbers read from their text. Bounds here are
the largest any service allows; a service's own (smaller) :class:`~genimage.serve.limits.Limits`
are checked by the studio, with messages that name the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

MAX_SEED = 2**63 - 1
TEXT_CAP = 100_000  # schema-level; the service's own max_prompt_chars is smaller


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


Text = Annotated[str, Field(max_length=TEXT_CAP), AfterValidator(_unicode)]
Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_unicode)]
Label = Union[Annotated[StrictInt, Field(ge=0, le=1_000_000)], Annotated[str, Field(max_length=64),
                                                                         AfterValidator(_unicode)]]


class Sampling(BaseModel):
    """Fields every generation and edit takes; unset sampling fields take the model's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: Optional[Name] = Field(None, description="a model from GET /api/models (default: the service's)")
    prompt: Optional[Text] = Field(None, description="text prompt (text models)")
    label: Optional[Label] = Field(None, description="class name or number (class models; default: cycle the classes)")
    negative: Optional[Text] = Field(None, description="negative prompt (text models)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the first image; image i uses seed + i")
    n: int = Field(1, ge=1, le=1024, description="number of images")
    sampler: Optional[Name] = Field(None, description="sampler name (default: the model's)")
    schedule: Optional[Name] = Field(None, description="timestep schedule name (default: the model's)")
    steps: Optional[int] = Field(None, ge=1, le=100_000, description="sampler steps (default: the model's)")
    guidance: Optional[float] = Field(None, ge=0, le=1000, allow_inf_nan=False,
                                      description="classifier-free guidance scale (default: the model's)")


class GenerateRequest(Sampling):
    """A generation request (``POST /api/generate``, ``POST /api/jobs``)."""


class JobRequest(Sampling):
    """``POST /api/jobs``: a generation job (edits and replays have their own multipart routes)."""

    kind: Literal["generate"] = Field("generate", description="what the job does")


class EditFields(Sampling):
    """The text fields of an edit upload (``POST /api/edit``, ``POST /api/jobs/edit``)."""

    strength: Optional[float] = Field(None, gt=0, le=1, allow_inf_nan=False,
                                      description="fraction of the schedule to run over the image (0.6 img2img, 1 otherwise)")
    extend: Optional[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        None, description="outpaint: LEFT,TOP,RIGHT,BOTTOM pixels to add (or one number)")
    resample: int = Field(1, ge=1, le=100, description="RePaint resampling of inpainting / outpainting / upscaling")
    upscale: Optional[int] = Field(None, ge=2, le=64, description="super-resolution factor (divides the model's size)")


class NoFields(BaseModel):
    """A multipart route with files only (``POST /api/jobs/replay``, ``POST /api/detect``)."""

    model_config = ConfigDict(extra="forbid")


def form_fields(form: Any, model: type[BaseModel], files: tuple[str, ...]) -> BaseModel:
    """Validate the text fields of a multipart ``form`` against ``model`` (numbers read from
    text; empty fields count as absent); ``files`` name the file fields, which must be files."""
    from genimage.errors import GenimageError

    data: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key in files:
            if isinstance(value, str):
                raise GenimageError(f"{key}: must be a file upload")
            continue
        if not isinstance(value, str):
            raise GenimageError(f"{key}: must be a text field, not a file")
        if key in data:
            raise GenimageError(f"{key}: given more than once")
        if value != "":
            data[key] = value
    return model.model_validate(data, strict=False)
