"""What the reporting service checks at its door: the caller's identity, a JSON payload against its
schema, PNG key images and screenshots."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image as PILImage
from pydantic import BaseModel, ValidationError

from glioscope_common.errors import InvalidInput, PayloadTooLarge, UnprocessableInput
from glioscope_reporting.reports.schemas import KEY_IMAGE_NAMES, CreateReport

PayloadT = TypeVar("PayloadT", bound=BaseModel)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Identity:
    """The end user on whose behalf the gateway calls, from the verified internal identity token."""

    user: str | None
    role: str | None

    def require_user(self) -> str:
        if not self.user:
            raise InvalidInput("a user identity is required for this change")
        return self.user


def parse_payload(raw: str | bytes, schema: type[PayloadT] = CreateReport) -> PayloadT:  # type: ignore[assignment]
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"payload is not valid JSON: {exc}") from exc
    try:
        return schema.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UnprocessableInput(f"invalid payload: {problems}") from exc


def check_png(name: str, data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"image {name!r} exceeds {max_bytes} bytes")
    if not data.startswith(PNG_MAGIC):
        raise InvalidInput(f"image {name!r} is not a PNG")
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.verify()
        with PILImage.open(io.BytesIO(data)) as img:  # verify() does not decode: load the pixels too
            img.load()
    except Exception as exc:  # Pillow raises many types for broken files
        raise InvalidInput(f"image {name!r} is not a readable PNG") from exc
    return data


def check_key_images(images: list[tuple[str, bytes]], max_bytes: int) -> list[tuple[str, bytes]]:
    """(file name, bytes) -> [(name, png)] ordered axial, coronal, sagittal."""
    named: dict[str, bytes] = {}
    for filename, data in images:
        name = filename.rsplit("/", 1)[-1].lower().removesuffix(".png")
        if name not in KEY_IMAGE_NAMES:
            raise InvalidInput(f"key image {filename!r}: name must be one of {', '.join(KEY_IMAGE_NAMES)} (.png)")
        if name in named:
            raise InvalidInput(f"key image {name!r} given twice")
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"key image {name!r} exceeds {max_bytes} bytes")
        if not data.startswith(PNG_MAGIC):
            raise InvalidInput(f"key image {name!r} is not a PNG")
        check_png(f"key image {name}", data, max_bytes)
        named[name] = data
    return [(n, named[n]) for n in KEY_IMAGE_NAMES if n in named]
