"""Settings of the reporting service (environment prefix GLIOSCOPE_); nothing else reads the environment."""

from __future__ import annotations

from pydantic import Field, SecretStr

from glioscope_common.settings import CommonSettings


class Settings(CommonSettings):
    # Largest accepted key image (PNG), per image.
    max_key_image_bytes: int = Field(10 * 1024 * 1024, gt=0)
    # Key images are downscaled to at most this many pixels per side in the PDF (keeps it small).
    pdf_image_max_px: int = Field(512, gt=16)
    # Run this service's Alembic migrations when the app starts.
    migrate_on_start: bool = True
    # Screenshots from the viewer: at most this many per report, each at most max_key_image_bytes.
    max_screenshots: int = Field(12, gt=0)

    # Optional LLM polishing through an OpenAI-compatible API (POST {llm_url}/chat/completions).
    # Empty llm_url: the deterministic draft only (the default).
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(20.0, gt=0)

    # Store the Encapsulated PDF and the TID 1500 SR to the PACS (DICOMweb STOW-RS to dicomweb_url) when a
    # report is signed or an addendum is added. POST /api/reports/{id}/export stores on demand either way.
    store_on_sign: bool = True
