"""Service settings, read once from `CAPTIONER_*` environment variables (or a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from captioning.runtime import DEFAULT_RUNTIME, DecoderRuntimeName, RuntimeOptions
from captioning.search_settings import MAX_BEAM_SIZE

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CAPTIONER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    artifacts_dir: Path = Path("artifacts")
    # Loopback by default so a developer run is not exposed; containers set CAPTIONER_HOST=0.0.0.0.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)  # 0: any free port

    # Upload limits: bytes per uploaded file, and decoded pixels (decompression bombs).
    max_upload_bytes: int = Field(10 * MiB, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_images_per_request: int = Field(16, ge=1)

    # Micro-batching.
    max_batch_size: int = Field(16, ge=1)
    # 0: no waiting. Requests that arrive while a batch runs form the next batch anyway, so
    # batching still pays under load; a wait would only add latency to a lone request.
    max_batch_wait_ms: float = Field(0.0, ge=0)
    max_queue_size: int = Field(64, ge=1)  # images waiting for the model; beyond -> 503

    # The model's runtimes, gathered into one `RuntimeOptions` (see it for what each means);
    # the defaults are its own.
    # "auto": LiteRT (int8 weights) when the bundle has decoder_step.tflite, else NumPy (float32).
    decoder_runtime: DecoderRuntimeName = DEFAULT_RUNTIME.decoder_runtime
    # LiteRT encoder threads for batches (which form only under load); a lone image gets every
    # core. 0: every core for batches too, as the encoder is the larger share of the work
    # (docs/experiments.md).
    encoder_batch_threads: int = Field(DEFAULT_RUNTIME.encoder_batch_threads, ge=0)
    # Images per LiteRT encoder call; a larger batch runs in pieces of this size, which is
    # faster per image (the activations stay in the CPU caches). 0: the whole batch at once.
    encoder_max_batch: int = Field(DEFAULT_RUNTIME.encoder_max_batch, ge=0)
    # BLAS threads for the NumPy decoder (1 is fastest for per-request batch sizes).
    blas_threads: int = Field(DEFAULT_RUNTIME.blas_threads, ge=1)
    # None: the model's (its manifest's `decoder.default_beam_size`, the recipe's 3).
    default_beam_size: int | None = Field(None, ge=1, le=MAX_BEAM_SIZE)
    # Captions name the photo's most confident concept (a request's `concepts` overrides).
    concepts: bool = True
    # Captions mention people, dogs and cats only with evidence (a request's `grounding` overrides).
    grounding: bool = True
    # Captions of photos without people or dogs stop where the decoder is unsure (a request's
    # `min_word_probability` overrides). None: captioning's default; 0: whole sentences.
    min_word_probability: float | None = Field(None, ge=0.0, lt=1.0)
    # Longest a request may wait for its captions; also bounds the drain on shutdown.
    request_timeout_s: float = Field(30.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = False

    # API keys, comma-separated, and/or a file of keys (one a line, # comments). With none, the
    # service is open, as before; with any, every route but /health and /ready needs one.
    # SecretStr: a key never shows in a repr, a log line or a validation error.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    api_keys_file: Path | None = None
    # Browser origins allowed to call the API (comma-separated, "*" for any); none by default.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(
            decoder_runtime=self.decoder_runtime,
            blas_threads=self.blas_threads,
            encoder_batch_threads=self.encoder_batch_threads,
            encoder_max_batch=self.encoder_max_batch,
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    def resolved_api_keys(self) -> tuple[str, ...]:
        """The keys from both settings; raises ValueError when the keys file cannot be read."""
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read api_keys_file {self.api_keys_file}: {exc}") from exc
            lines = (line.strip() for line in text.splitlines())
            from_file = [line for line in lines if line and not line.startswith("#")]
            if not from_file:  # an empty file must not quietly leave the service open
                raise ValueError(f"api_keys_file {self.api_keys_file} holds no key")
            keys += from_file
        return tuple(dict.fromkeys(keys))

    @model_validator(mode="after")
    def _batch_request_fits_queue(self) -> Settings:
        # A /captions request is admitted all at once; if it could never fit it would always 503.
        if self.max_images_per_request > self.max_queue_size:
            raise ValueError(
                f"max_images_per_request ({self.max_images_per_request}) must not exceed "
                f"max_queue_size ({self.max_queue_size})"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
