"""What the route modules share: the app's context (models, sessions, dataset, config), reaching a tab's session,
running locked work off the event loop, and the JSON the page gets for a workspace."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from . import pictures
from .dataset import DatasetIndex
from .guards import AppConfig, check_access
from .models import AppModels, ModelChoices
from .state import AppError, Detection, Session, SessionStore, Workspace


@dataclass
class AppContext:
    models: ModelChoices
    config: AppConfig
    sessions: SessionStore
    dataset: DatasetIndex | None
    prompts: str = ""  # what the prompt box starts with

    def session(self, request: Request) -> Session:
        """The tab's session (``X-Session``), after the access checks."""
        check_access(request, self.config)
        return self.sessions.get(request.headers.get("x-session"))

    def models_of(self, session: Session) -> AppModels:
        return self.models.get(session.model_name)

    def need_dataset(self) -> DatasetIndex:
        if self.dataset is None:
            raise AppError("This app was started without a dataset: grounded-sam app DATASET_FOLDER", 404)
        return self.dataset


async def locked(session: Session, work):
    """Runs ``work(workspace_or_none)`` under the session's lock on the thread pool. Never on the event loop: a lock
    held by a running click would freeze the whole server there."""

    def run():
        with session.lock:
            return work()

    return await run_in_threadpool(run)


def ok(payload: dict) -> JSONResponse:
    return JSONResponse(payload, headers={"Cache-Control": "no-store"})


def workspace_json(workspace: Workspace) -> dict:
    """The page's view of a workspace: its size, classes and every detection."""
    height, width = workspace.size
    classes = workspace.class_names()
    return {
        "name": workspace.name,
        "width": width,
        "height": height,
        "dataset_key": workspace.dataset_key,
        "classes": classes,
        "encoded": workspace.embedding is not None,
        "detections": [detection_json(d, classes) for d in workspace.chosen()],
    }


def detection_json(detection: Detection, classes: list[str]) -> dict:
    """One detection for the page: text fields (shown with textContent, never as markup) and its mask as a 1-bit PNG
    data URL in its class's colour."""
    index = classes.index(detection.class_name) if detection.class_name in classes else len(classes)
    mask = detection.mask
    return {
        "id": detection.id,
        "class_name": detection.class_name,
        "confidence": detection.confidence,
        "source": detection.source,
        "box": detection.box,
        "xyxy": detection.mask_box(mask),
        "points": detection.points,
        "labels": detection.labels,
        "mask_score": detection.mask_score,
        "edited": detection.edited,
        "color": pictures.color_hex(index),
        "mask": pictures.mask_data_url(mask, pictures.class_color(index)),
    }
