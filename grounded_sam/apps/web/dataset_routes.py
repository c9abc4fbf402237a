"""The dataset screen's API: the listing the page filters, a dataset image served by its name, opening an image in
the editor, and saving its corrections."""

from __future__ import annotations

import json
import mimetypes

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from . import guards
from .api import AppContext, locked, ok, workspace_json
from .guards import check_access
from .state import AppError

MAX_CHANGES_BYTES = 100_000  # what one save logs


class DatasetRoutes:
    def __init__(self, context: AppContext):
        self.context = context

    def routes(self) -> list[Route]:
        return [
            Route("/api/dataset", self.listing),
            Route("/api/dataset/image", self.image),
            Route("/api/dataset/open", self.open, methods=["POST"]),
            Route("/api/dataset/save", self.save, methods=["POST"]),
        ]

    async def listing(self, request: Request) -> Response:
        """Per image: name, split, the class of each detection, lowest confidence, corrected or not."""
        check_access(request, self.context.config)
        dataset = self.context.need_dataset()
        return ok({"root": dataset.root.name, "classes": dataset.classes, "images": dataset.listing()})

    async def image(self, request: Request) -> Response:
        """``?name=``: the dataset image of that name, looked up in the index built from the records; a name that is
        not in it (a path, ``..``, another file of the folder) gets 404. No string from the request reaches a path."""
        check_access(request, self.context.config)
        entry = self.context.need_dataset().entry(request.query_params.get("name"))
        media = mimetypes.guess_type(entry.image.name)[0] or "application/octet-stream"
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
        return FileResponse(entry.image, media_type=media, headers=headers)

    async def open(self, request: Request) -> Response:
        """``{name}``: the image and its detections in this tab's editor (SAM 2 encodes it on the first click)."""
        session, payload = self.context.session(request), await guards.read_json(request)
        dataset = self.context.need_dataset()
        workspace = await run_in_threadpool(dataset.open, payload.get("name"))

        def work():
            session.workspace = workspace
            return workspace_json(workspace)

        return ok(await locked(session, work))

    async def save(self, request: Request) -> Response:
        """``{changes}`` (what the page did, for the log): the editor's detections become the image's labels."""
        session, payload = self.context.session(request), await guards.read_json(request)
        dataset = self.context.need_dataset()
        changes = payload.get("changes", [])
        if not isinstance(changes, list) or len(json.dumps(changes)) > MAX_CHANGES_BYTES:
            raise AppError(f"changes must be a list of at most {MAX_CHANGES_BYTES} bytes as JSON")

        def work():
            workspace = session.require()
            if workspace.dataset_key is None:
                raise AppError("This image is not from the dataset: open one from the Dataset tab to save it")
            saved = dataset.save(workspace, changes)
            reopened = dataset.open(workspace.dataset_key)  # as saved (confidences of edited objects now 1.0)
            reopened.embedding, reopened.embedded_by = workspace.embedding, workspace.embedded_by  # same image
            session.workspace = reopened
            return {**saved, "workspace": workspace_json(reopened)}

        return ok(await locked(session, work))
