"""Settings of the reporting service (environment prefix GLIOSCOPE_); nothing else reads the environment."""

from __future__ import annotations

from pydantic import Field

from glioscope_common.settings import CommonSettings


class Settings(CommonSettings):
    # Largest accepted key image (PNG), per image.
    max_key_image_bytes: int = Field(10 * 1024 * 1024, gt=0)
    # Key images are downscaled to at most this many pixels per side in the PDF (keeps it small).
    pdf_image_max_px: int = Field(512, gt=16)
    # Run this service's Alembic migrations when the app starts.
    migrate_on_start: bool = True
