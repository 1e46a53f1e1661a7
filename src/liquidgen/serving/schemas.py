"""Request bodies of the API: parsed and checked (:mod:`liquidgen.serving.requests` turns
them into engine jobs).

Every mistake becomes an :class:`ApiError` (an HTTP 4xx with one line in OpenAI's error
shape ``{"error": {"message", "type", "param", "code"}}``): the body is decoded as strict
UTF-8, parsed as JSON without NaN/Infinity, validated against a model that forbids unknown
fields and does not coerce types (``"n": "2"`` is an error), then resolved against the
checkpoint (:mod:`liquidgen.serving.requests`) with the library's own checks (:mod:`liquidgen.inference.request`: sizes,
factor, context; :mod:`liquidgen.utils.limits`: pixels and decompression bombs).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from liquidgen.errors import LiquidgenError
from liquidgen.utils.args import SEED_MAX

# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Limits and switches of one server (``liquidgen serve`` options)."""

    model_id: str = "liquidgen"
    api_key: str | None = None
    max_n: int = 4  # images per request
    max_queue: int = 64  # requests waiting for rows before 429
    max_rows: int = 128  # rows in one forward (an image with guidance takes two)
    max_body_bytes: int = 8 * 1024 * 1024
    request_timeout: float = 300.0  # seconds from submission to the last token
    max_prompt_chars: int = 4000
    max_tokens: int = 512  # cap of max_tokens for chat
    max_upload_megapixels: float = 16.0  # decoded pixels of an uploaded image


# --------------------------------------------------------------------------- errors
class ApiError(Exception):
    """A request the API refuses: status, one-line message and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = _one_line(message)
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str = "invalid_request_error", param: str | None = None, code: Any = None
) -> dict[str, Any]:
    return {"error": {"message": _one_line(message), "type": type, "param": param, "code": code}}


def _one_line(message: object) -> str:
    from liquidgen.cli import one_line

    return one_line(message)


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


# --------------------------------------------------------------------------- the body
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (strict UTF-8, no NaN/Infinity, not too deep)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad(f"the body is not valid UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise bad("the body is empty; expected a JSON object")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise bad(f"malformed JSON: {e.msg} (line {e.lineno} column {e.colno})") from None
    except ValueError as e:
        raise bad(f"malformed JSON: {e}") from None
    except RecursionError:
        raise bad("malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise bad(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``model.model_validate(data)`` with the first error as one line."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise bad(f"unknown field {where!r}", param=where) from None
        if err["type"] == "missing":
            raise bad(f"missing field {where!r}", param=where) from None
        raise bad(f"{where}: {err['msg']}", param=where or None) from None


def check_text(value: str, what: str, limit: int) -> str:
    """A user text: valid Unicode (no lone surrogates), not blank, at most ``limit`` chars."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(f"the {what} is not valid Unicode (unpaired surrogate)", param=what) from None
    if not value.strip():
        raise bad(f"the {what} is empty", param=what)
    if len(value) > limit:
        raise bad(f"the {what} is {len(value)} characters long; the limit is {limit}", param=what)
    return value


_STRICT = ConfigDict(extra="forbid", strict=True)
Seed = Annotated[int, Field(ge=0, le=SEED_MAX - 1024)]


class ImagesBody(BaseModel):
    """``POST /v1/images/generations``: OpenAI's fields + liquidgen's sampling fields."""

    model_config = _STRICT
    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None  # "WxH" or "auto"
    response_format: Literal["b64_json"] = "b64_json"
    stream: bool = False  # liquidgen: server-sent progress and images
    user: str | None = None
    quality: str | None = None  # accepted, ignored
    style: str | None = None  # accepted, ignored
    cfg_scale: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: Seed | None = None


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = _STRICT
    url: str
    detail: str | None = None


class ImagePart(BaseModel):
    model_config = _STRICT
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(BaseModel):
    model_config = _STRICT
    role: Literal["system", "user", "assistant"]
    content: str | list[Part]
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class ChatBody(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's chat fields liquidgen can honour."""

    model_config = _STRICT
    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # liquidgen
    seed: Seed | None = None
    n: Literal[1] = 1
    user: str | None = None


def check_model(name: str | None, settings: ServerSettings) -> None:
    if name is not None and name != settings.model_id:
        raise ApiError(
            404,
            f"the model {name!r} does not exist; this server serves {settings.model_id!r}",
            param="model",
            code="model_not_found",
        )


def new_seed() -> int:
    return secrets.randbelow(2**31)


_SIZE = re.compile(r"^\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*$")


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    """``"WxH"`` -> ``(W, H)``; ``None``/``"auto"``: the checkpoint's default."""
    if size is None or size == "auto":
        return None, None
    match = _SIZE.match(size)
    if match is None:
        raise bad(f"size must be 'WIDTHxHEIGHT' (e.g. '128x128') or 'auto', got {size!r}", "size")
    return int(match.group(1)), int(match.group(2))


# --------------------------------------------------------------------------- uploads
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,", re.I)


def decode_data_url(url: str, settings: ServerSettings) -> Any:
    """An uploaded image: a ``data:image/...;base64,`` URL -> an RGB PIL image.

    Refuses other URLs (the server fetches nothing), bad base64, non-images, truncated files
    and images above the pixel limit (checked in the header, before decoding).
    """
    from liquidgen.tokenizer.images import to_rgb
    from liquidgen.utils.limits import MEGA, decode_image_bytes

    match = _DATA_URL.match(url)
    if match is None:
        scheme = url.split(":", 1)[0][:20] if ":" in url else "(none)"
        raise bad(
            f"image_url must be a base64 data: URL (data:image/png;base64,...); got scheme "
            f"{scheme!r} — the server fetches nothing",
            param="image_url",
        )
    try:
        data = base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise bad("image_url: invalid base64 data", param="image_url") from None
    if not data:
        raise bad("image_url: empty image data", param="image_url")
    try:
        image = decode_image_bytes(
            data, "uploaded image", limit=int(settings.max_upload_megapixels * MEGA)
        )
    except LiquidgenError as e:
        raise bad(str(e), param="image_url") from None
    return to_rgb(image)


def chat_inputs(
    body: ChatBody, settings: ServerSettings
) -> tuple[list[dict[str, str]], str | None]:
    """OpenAI messages -> liquidgen messages (text content) and the one image's data URL."""
    messages: list[dict[str, str]] = []
    image: str | None = None
    for k, message in enumerate(body.messages):
        if isinstance(message.content, str):
            text = message.content
        else:
            texts = []
            for part in message.content:
                if isinstance(part, TextPart):
                    texts.append(part.text)
                    continue
                if message.role != "user":
                    raise bad("images may only appear in user messages", f"messages.{k}")
                if image is not None:
                    raise bad("only one image per conversation is supported", f"messages.{k}")
                image = part.image_url.url
            text = "\n".join(texts)
        what = f"messages.{k}.content"
        if message.role == "user" or text:
            check_text(text, what, settings.max_prompt_chars)
        messages.append({"role": message.role, "content": text})
    if messages[-1]["role"] != "user":
        raise bad("the last message must come from the user", "messages")
    return messages, image
