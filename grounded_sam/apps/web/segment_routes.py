"""The segment screen's API: upload an image, find objects by text or "find everything", segment everything, add,
refine, delete and rename detections, load an ontology file, pick the models, and the downloads."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from grounded_sam.detections import detections_to_json
from grounded_sam.ontology import MAX_FILE_BYTES, CaptionOntology

from . import editing, guards, pictures
from .api import AppContext, detection_json, locked, ok, workspace_json
from .state import AppError, Workspace

EXPORTS = ("json", "annotated", "mask", "cutout")
EVERYTHING_LIMITS = {  # option: (low, high) of what the page may ask of segment-everything
    "points_per_side": (1, 64),
    "pred_iou_thresh": (0.0, 1.0),
    "stability_score_thresh": (0.0, 1.0),
    "min_mask_region_area": (0, 1_000_000),
}


class SegmentRoutes:
    def __init__(self, context: AppContext):
        self.context = context

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            Route("/api/image", self.upload, methods=post),
            Route("/api/run", self.run, methods=post),
            Route("/api/everything", self.everything, methods=post),
            Route("/api/refine", self.refine, methods=post),
            Route("/api/add", self.add, methods=post),
            Route("/api/delete", self.delete, methods=post),
            Route("/api/class", self.set_class, methods=post),
            Route("/api/ontology", self.ontology_file, methods=post),
            Route("/api/model", self.choose_model, methods=post),
            Route("/api/export/{kind}", self.export, methods=post),
        ]

    async def upload(self, request: Request) -> Response:
        """Raw image bytes (the file name in ``X-File-Name``, percent-encoded); decoded under the limits and encoded
        by SAM 2 once, for every click to come."""
        session = self.context.session(request)
        config = self.context.config
        data = await guards.read_capped(request, config.max_upload_bytes)
        name = unquote(request.headers.get("x-file-name", "upload"))[:200]
        models = self.context.models_of(session)

        def work():
            workspace = Workspace(image=pictures.decode_upload(data, name, config.max_pixels), name=name)
            editing.embedding(models, workspace)
            session.workspace = workspace
            return workspace_json(workspace)

        return ok(await locked(session, work))

    async def run(self, request: Request) -> Response:
        """``{prompts, task, min_confidence, nms, keep}``: the detector's boxes (with Florence-2, task
        ``object_detection`` and no prompts: every object it knows), then one mask-decoder pass on the cached
        embedding."""
        session, payload = self.context.session(request), await guards.read_json(request)
        models = self.context.models_of(session)
        ontology = guards.ontology(payload.get("prompts", ""))
        task = guards.task(payload.get("task", models.options.task))
        min_confidence = guards.number(
            payload.get("min_confidence", models.options.min_confidence), "min_confidence", 0, 1
        )
        nms = guards.number(payload.get("nms", models.options.nms_threshold or 0), "nms", 0, 1) or None
        keep = guards.flag(payload.get("keep", False), "keep")

        def work():
            workspace = session.require()
            editing.find(models, workspace, ontology, task, min_confidence, nms, keep)
            return workspace_json(workspace)

        return ok(await locked(session, work))

    async def everything(self, request: Request) -> Response:
        """SAM 2's segment-everything with the page's thresholds; every mask becomes an object of ``class_name``."""
        session, payload = self.context.session(request), await guards.read_json(request)
        models = self.context.models_of(session)
        class_name = guards.class_name(payload.get("class_name", "object"))
        keep = guards.flag(payload.get("keep", False), "keep")
        options = {}
        for key, (low, high) in EVERYTHING_LIMITS.items():
            if key in payload:
                check = guards.integer if isinstance(low, int) else guards.number
                options[key] = check(payload[key], key, low, high)

        def work():
            workspace = session.require()
            editing.everything(models, workspace, class_name, options, keep)
            return workspace_json(workspace)

        return ok(await locked(session, work))

    async def refine(self, request: Request) -> Response:
        """``{id, point, label}``: one + or - click on a detection; the mask decoder only."""
        session, payload = self.context.session(request), await guards.read_json(request)
        models = self.context.models_of(session)

        def work():
            workspace = session.require()
            detection = workspace.get(payload.get("id"))
            point = guards.point(payload.get("point"), workspace.size)
            editing.refine(models, workspace, detection, point, guards.click_label(payload.get("label", 1)))
            return detection_json(detection, workspace.class_names())

        return ok(await locked(session, work))

    async def add(self, request: Request) -> Response:
        """``{class_name, box}`` or ``{class_name, point}``: a missed object."""
        session, payload = self.context.session(request), await guards.read_json(request)
        models = self.context.models_of(session)
        class_name = guards.class_name(payload.get("class_name"))

        def work():
            workspace = session.require()
            if payload.get("box") is not None:
                box = guards.box(payload["box"], workspace.size)
                detection = editing.add_from_box(models, workspace, class_name, box)
            else:
                point = guards.point(payload.get("point"), workspace.size)
                detection = editing.add_from_click(models, workspace, class_name, point)
            return detection_json(detection, workspace.class_names())

        return ok(await locked(session, work))

    async def delete(self, request: Request) -> Response:
        session, payload = self.context.session(request), await guards.read_json(request)

        def work():
            workspace = session.require()
            return {"deleted": workspace.detections.pop(workspace.get(payload.get("id")).id).id}

        return ok(await locked(session, work))

    async def set_class(self, request: Request) -> Response:
        session, payload = self.context.session(request), await guards.read_json(request)
        class_name = guards.class_name(payload.get("class_name"))

        def work():
            workspace = session.require()
            detection = workspace.get(payload.get("id"))
            detection.class_name, detection.edited = class_name, True
            return workspace_json(workspace)  # colours follow classes: the page redraws them all

        return ok(await locked(session, work))

    async def ontology_file(self, request: Request) -> Response:
        """A YAML or JSON ontology file's bytes -> the prompts text, read by the same loader (and with the same
        limits: UTF-8, 1 MiB, no anchors or aliases, no key twice) as ``CaptionOntology.from_file``."""
        self.context.session(request)
        data = await guards.read_capped(request, MAX_FILE_BYTES)
        suffix = ".json" if unquote(request.headers.get("x-file-name", "")).lower().endswith(".json") else ".yaml"

        def work():
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"ontology{suffix}"  # our own name: nothing from the request reaches a path
                path.write_bytes(data)
                return {"prompts": guards.prompts_text(CaptionOntology.from_file(path))}

        return ok(await run_in_threadpool(work))

    async def choose_model(self, request: Request) -> Response:
        """``{name}``: this tab's model pair from now on (loaded on first use; the image is encoded again)."""
        session, payload = self.context.session(request), await guards.read_json(request)
        name = payload.get("name")
        if not isinstance(name, str):
            raise AppError("name must be one of the model pairs listed")

        def work():
            models = self.context.models.get(name)
            session.model_name = name
            return {"models": models.describe()}

        return ok(await locked(session, work))

    async def export(self, request: Request) -> Response:
        """``{ids}`` (the shown detections) for json and annotated, ``{id}`` for mask and cutout: a download."""
        session, payload = self.context.session(request), await guards.read_json(request)
        kind = request.path_params["kind"]
        if kind not in EXPORTS:
            raise AppError(f"Unknown download {kind!r}; one of {list(EXPORTS)}", 404)

        def work():
            return export(session.require(), kind, payload)

        body, media, filename = await locked(session, work)
        disposition = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        return Response(
            body, media_type=media, headers={"Content-Disposition": disposition, "Cache-Control": "no-store"}
        )


def export(workspace: Workspace, kind: str, payload: dict) -> tuple[bytes, str, str]:
    """(bytes, media type, file name) of one download."""
    stem = Path(workspace.name).stem or "image"
    if kind == "json":
        return (
            json.dumps(export_json(workspace, payload.get("ids")), ensure_ascii=False).encode(),
            "application/json",
            f"{stem}.json",
        )
    if kind == "annotated":
        picture = pictures.annotated_png(workspace.image, workspace.to_detections(payload.get("ids")))
        return picture, "image/png", f"{stem}_annotated.png"
    detection = workspace.get(payload.get("id"))
    if kind == "mask":
        return pictures.mask_png(detection.mask), "image/png", f"{stem}_mask_{detection.id}.png"
    return pictures.cutout_png(workspace.image, detection.mask), "image/png", f"{stem}_cutout_{detection.id}.png"


def export_json(workspace: Workspace, ids=None) -> dict:
    """The JSON download: ``grounded-sam predict``'s form (``image``, ``width``, ``height``, ``detections`` as
    :func:`grounded_sam.detections.detections_to_json` writes them, COCO RLE masks), plus ``classes`` (what class_id
    indexes) and ``prompts``: per detection, the prompt box and the clicks that made its mask."""
    chosen = workspace.chosen(ids)
    height, width = workspace.size
    return {
        "image": workspace.name,
        "width": width,
        "height": height,
        "classes": workspace.class_names(),
        "detections": detections_to_json(workspace.to_detections([d.id for d in chosen])),
        "prompts": [{"box": d.box, "points": d.points, "labels": d.labels} for d in chosen],
    }
