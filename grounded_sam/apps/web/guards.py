"""What every request goes through, and the checks on what a page sends.

In order of a request's path through the app:

- ``TrustedHostMiddleware`` (in ``server``): the Host header must name this server, so a page on another site that
  rebinds its DNS name to 127.0.0.1 gets 400.
- :func:`check_access`: with ``--auth``, a token from the cookie ``/login?token=...`` sets or an ``Authorization:
  Bearer`` header, compared in constant time; POSTs need a same-origin ``Origin`` when the browser sends one, and every
  API call an ``X-Session`` header, which a cross-site form cannot set and a cross-site script cannot send without a
  CORS preflight the app never answers.
- :func:`read_capped`: bodies are capped by their declared length and again while streaming (413).
- the page: a Content-Security-Policy with nothing from other origins and no inline script; every text goes into the
  page with ``textContent``.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from starlette.requests import Request

from grounded_sam.detection.florence2 import TASKS
from grounded_sam.images import DEFAULT_MAX_PIXELS
from grounded_sam.ontology import CaptionOntology

from .state import AppError

COOKIE = "grounded_sam_app_token"
MAX_JSON_BYTES = 1 << 20
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self' http://localhost:* http://127.0.0.1:*"
)


@dataclass(frozen=True)
class AppConfig:
    """How the app serves: where, with which token, and the limits on what a page may send.

    ``auth_token`` None: no token (the default on 127.0.0.1). ``max_pixels`` None: no pixel limit.
    ``frame_ancestors`` adds origins allowed to show the app in a frame (notebooks).
    """

    host: str = "127.0.0.1"
    port: int = 7860
    auth_token: str | None = None
    max_upload_bytes: int = 30 * 1024 * 1024
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_sessions: int = 16
    frame_ancestors: tuple[str, ...] = ()

    def csp(self) -> str:
        return " ".join([CSP, *self.frame_ancestors])


def authorized(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    given = request.cookies.get(COOKIE) or request.headers.get("authorization", "").removeprefix("Bearer ")
    return hmac.compare_digest(given.encode(), token.encode())


def check_access(request: Request, config: AppConfig) -> None:
    """Raises AppError (401, 403) for a request without the token, or a POST from another origin."""
    if not authorized(request, config.auth_token):
        raise AppError("Not signed in: open the URL with ?token=... that the server printed", 401)
    if request.method == "POST":
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise AppError("Cross-origin request refused", 403)


def page_headers(config: AppConfig) -> dict:
    return {
        "Content-Security-Policy": config.csp(),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise AppError(f"The upload is {int(declared) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB", 413)
    chunks, size = [], 0
    async for chunk in request.stream():  # Content-Length may be absent or wrong
        size += len(chunk)
        if size > limit:
            raise AppError(f"The upload is over the {limit / 1e6:.1f} MB limit", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> dict:
    body = await read_capped(request, MAX_JSON_BYTES)
    try:
        payload = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise AppError("The request body is not JSON") from None
    if not isinstance(payload, dict):
        raise AppError("The request body must be a JSON object")
    return payload


def number(value, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise AppError(f"{what} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def integer(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AppError(f"{what} must be a whole number in [{low}, {high}], got {value!r}")
    return value


def flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise AppError(f"{what} must be true or false, got {value!r}")
    return value


def point(value, size: tuple[int, int]) -> list[float]:
    """[x, y] pixels inside an image of ``size`` (H, W)."""
    height, width = size
    if not (isinstance(value, list) and len(value) == 2):
        raise AppError(f"point must be [x, y] in pixels, got {value!r}")
    return [number(value[0], "x", 0, width), number(value[1], "y", 0, height)]


def box(value, size: tuple[int, int]) -> list[float]:
    """[x1, y1, x2, y2] pixels inside an image of ``size`` (H, W), corners in any order -> top left first."""
    if not (isinstance(value, list) and len(value) == 4):
        raise AppError(f"box must be [x1, y1, x2, y2] in pixels, got {value!r}")
    (x1, y1), (x2, y2) = point(value[:2], size), point(value[2:], size)
    x1, x2, y1, y2 = *sorted((x1, x2)), *sorted((y1, y2))
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise AppError("The box is too small: drag over the object")
    return [x1, y1, x2, y2]


def click_label(value) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise AppError(f"label must be 1 (part of the object) or 0 (not part of it), got {value!r}")
    return int(value)


def class_name(value) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise AppError("class_name must be non-blank text of at most 200 characters")
    return value.strip()


def task(value) -> str:
    if value not in TASKS:
        raise AppError(f"task must be one of {list(TASKS)}, got {value!r}")
    return value


def ontology(text) -> CaptionOntology | None:
    """``"a dog, a person=person"``: prompts separated by commas or lines; ``prompt=class`` names a prompt's class
    (default: the prompt itself). None for no prompt at all."""
    if not isinstance(text, str) or len(text) > 20_000:
        raise AppError("prompts must be text of at most 20000 characters")
    pairs = {}
    for item in text.replace("\n", ",").split(","):
        prompt, _, name = item.partition("=")
        if prompt.strip():
            pairs[prompt.strip()] = (name or prompt).strip()
    return CaptionOntology(pairs) if pairs else None


def prompts_text(ontology: CaptionOntology) -> str:
    """The inverse of :func:`ontology`: ``"a dog, puppy=dog"``."""
    return ", ".join(p if p == c else f"{p}={c}" for p, c in ontology.to_dict().items())
