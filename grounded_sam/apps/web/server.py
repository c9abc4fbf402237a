"""The app as an ASGI application (Starlette): the page, its two static files, sign-in, sessions, and the routes of
both screens (``segment_routes``, ``dataset_routes``). Security is described in ``guards``."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from grounded_sam.errors import (
    GroundedSAMError,
    ModelNotAvailableError,
    OutputFolderError,
    OutputWriteError,
    UserInputError,
)

from . import guards
from .api import AppContext, ok
from .dataset import DatasetIndex
from .dataset_routes import DatasetRoutes
from .guards import AppConfig
from .models import AppModels, ModelChoices
from .segment_routes import SegmentRoutes
from .state import AppError, SessionStore

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {
    "app.js": "text/javascript",
    "dataset.js": "text/javascript",
    "app.css": "text/css",
}  # a fixed list: no request string reaches a path
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1"]


def create_app(
    models: AppModels | ModelChoices,
    config: AppConfig | None = None,
    dataset: str | Path | DatasetIndex | None = None,
    prompts: str | None = None,
) -> Starlette:
    """The ASGI app; serve it with :func:`grounded_sam.apps.web.serve.make_server` (or ``uvicorn.run(app)``).

    Args:
        models: the models (built once, shared by every tab), or the choice of model pairs a page may switch between.
        config: where it serves and its limits (default: 127.0.0.1, no token).
        dataset: a folder written by ``grounded-sam label`` to review and correct, or None.
        prompts: what the prompt box starts with (default: the dataset's ontology, if any).
    """
    config = config or AppConfig()
    choices = models if isinstance(models, ModelChoices) else ModelChoices(models)
    index = dataset if isinstance(dataset, DatasetIndex) or dataset is None else DatasetIndex(dataset)
    if prompts is None:
        prompts = guards.prompts_text(index.ontology) if index is not None else ""
    context = AppContext(choices, config, SessionStore(config.max_sessions), index, prompts)
    pages = Pages(context)
    routes = pages.routes() + SegmentRoutes(context).routes() + DatasetRoutes(context).routes()
    # The Host header must name this server (DNS rebinding); on every interface it cannot be known: --auth guards it
    hosts = ["*"] if config.host in ("0.0.0.0", "::") else [*LOOPBACK_HOSTS, config.host]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
        exception_handlers={AppError: _refused, GroundedSAMError: _refused, 500: _server_error},
    )
    app.state.context = context
    return app


_STATUS = [(ModelNotAvailableError, 503), (OutputFolderError, 409), (OutputWriteError, 507), (UserInputError, 400)]


async def _refused(request: Request, error: Exception) -> Response:
    """A request refused on purpose: its status and the message, which says what to do."""
    status = getattr(error, "status", None) or next((code for kind, code in _STATUS if isinstance(error, kind)), 400)
    return JSONResponse({"error": str(error)}, status_code=status)


async def _server_error(request: Request, error: Exception) -> Response:
    logger.exception("request %s failed", request.url.path, exc_info=error)
    return JSONResponse({"error": f"Internal error ({type(error).__name__}); see the server's log"}, status_code=500)


class Pages:
    """The page, its static files, sign-in and a tab's session."""

    def __init__(self, context: AppContext):
        self.context = context

    def routes(self) -> list[Route]:
        return [
            Route("/", self.page),
            Route("/login", self.login),
            Route("/static/{name}", self.static),
            Route("/api/session", self.new_session, methods=["POST"]),
        ]

    async def page(self, request: Request) -> Response:
        headers = guards.page_headers(self.context.config)
        if not guards.authorized(request, self.context.config.auth_token):
            return PlainTextResponse("Open this app with the URL the server printed (it ends in ?token=...).", 401)
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=headers)

    async def login(self, request: Request) -> Response:
        """``/login?token=``: with the right token, an HttpOnly cookie (as Jupyter's token login sets one)."""
        token, expected = request.query_params.get("token", ""), self.context.config.auth_token
        if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
            return PlainTextResponse("Wrong or missing token", 401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(guards.COOKIE, token, httponly=True, samesite="strict")
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return PlainTextResponse("Not found", 404)
        return FileResponse(
            STATIC / name, media_type=STATIC_FILES[name], headers=guards.page_headers(self.context.config)
        )

    async def new_session(self, request: Request) -> Response:
        """A new session for a tab (each tab calls this on load and keeps the id in memory)."""
        guards.check_access(request, self.context.config)
        context = self.context
        config, dataset = context.config, context.dataset
        return ok(
            {
                "session": context.sessions.create(context.models.default),
                "dataset": dataset is not None,
                "classes": dataset.classes if dataset is not None else [],
                "prompts": context.prompts,
                "models": context.models.listing(),
                "model": context.models.get(None).describe(),
                "options": _starting_options(context.models.get(None)),
                "limits": {"max_upload_bytes": config.max_upload_bytes, "max_pixels": config.max_pixels},
            }
        )


def _starting_options(models: AppModels) -> dict:
    options = models.options
    return {
        "task": options.task,
        "min_confidence": options.min_confidence,
        "nms": options.nms_threshold or 0,
        "text_prompts": models.detector is not None,
        "find_everything": models.finds_everything,
    }
