"""``grounded-sam app``: a local web app to segment images by text or clicks, and to review and correct a labeled
dataset (README "App"). Needs the ``app`` extra (Starlette and uvicorn).

One hand-written page (``static/``: HTML, CSS and JavaScript, no framework, nothing from other origins) talks to a
small JSON API. ``models`` (loaded once per process), ``state`` (per-tab sessions), ``editing`` (what a click does),
``pictures``, ``dataset`` (a labeled dataset as the app sees it), ``guards`` (security, checks), ``api``,
``segment_routes``, ``dataset_routes``, ``server`` (the ASGI app), ``serve`` (uvicorn, notebooks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grounded_sam.lazy import lazy_exports

_WHERE = {
    "AppConfig": "grounded_sam.apps.web.guards",
    "AppModels": "grounded_sam.apps.web.models",
    "ModelChoices": "grounded_sam.apps.web.models",
    "create_app": "grounded_sam.apps.web.server",
    "make_server": "grounded_sam.apps.web.serve",
    "show_app": "grounded_sam.apps.web.serve",
    "start_in_thread": "grounded_sam.apps.web.serve",
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

if TYPE_CHECKING:
    from grounded_sam.apps.web.guards import AppConfig
    from grounded_sam.apps.web.models import AppModels, ModelChoices
    from grounded_sam.apps.web.serve import make_server, show_app, start_in_thread
    from grounded_sam.apps.web.server import create_app
