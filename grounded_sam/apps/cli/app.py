"""``grounded-sam app [DATASET]``: the local web app (segment by text or clicks; review and correct a dataset)."""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.apps.cli.common import (
    BoxThreshold,
    DetectorModel,
    DetectorName,
    Device,
    Dtype,
    Florence,
    MinConfidence,
    Nms,
    OntologyFile,
    Preset,
    Prompts,
    Sam,
    TextThreshold,
    UserError,
    console,
    ontology_from,
    pipeline_spec,
    user_errors,
)
from grounded_sam.images import DEFAULT_MAX_PIXELS

TOKEN_VARIABLE = "GROUNDED_SAM_APP_TOKEN"


@user_errors
def app(
    dataset: Annotated[
        Path | None, typer.Argument(help="A dataset written by `grounded-sam label`, to review and correct.")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Interface to listen on; anything but 127.0.0.1 reaches beyond this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on; 0: any free one.")] = 7860,
    auth: Annotated[
        bool, typer.Option("--auth", help=f"Require a token: ${TOKEN_VARIABLE}, or a new one printed at start.")
    ] = False,
    max_upload_mb: Annotated[float, typer.Option(min=0.1, help="Largest image file a page may upload.")] = 30.0,
    max_pixels: Annotated[
        int, typer.Option(min=0, help="Largest image a page may upload, in pixels (from its header); 0: no limit.")
    ] = DEFAULT_MAX_PIXELS,
    prompt: Prompts = None,
    ontology: OntologyFile = None,
    florence: Florence = None,
    sam: Sam = None,
    preset: Preset = "default",
    device: Device = "auto",
    dtype: Dtype = "auto",
    min_confidence: MinConfidence = 0.0,
    nms: Nms = 0.7,
    detector: DetectorName = "florence2",
    detector_model: DetectorModel = None,
    box_threshold: BoxThreshold = None,
    text_threshold: TextThreshold = None,
    check: Annotated[
        bool, typer.Option("--check", help="Start, answer one request from itself and exit (for scripts).")
    ] = False,
) -> None:
    """Serve the web app on this machine: upload an image, segment it by text, clicks or boxes, download masks,
    cut-outs and JSON; with DATASET, browse it, fix its labels and save them back.

    Example: grounded-sam app photos_labeled/ --preset fast   (then open http://127.0.0.1:7860/)
    """
    for package in ("starlette", "uvicorn"):
        if importlib.util.find_spec(package) is None:
            raise UserError(f"grounded-sam app needs {package}: pip install 'grounded-sam[app]'")
    from grounded_sam.apps.web.dataset import DatasetIndex
    from grounded_sam.apps.web.guards import AppConfig, prompts_text
    from grounded_sam.apps.web.serve import exposure_warning, free_port, make_server, port_is_free

    # Everything that can be checked is checked before the models load, which takes a while.
    index = DatasetIndex(dataset) if dataset is not None else None
    starting = ontology_from(prompt, ontology) if prompt or ontology else None
    detector_options = dict(
        detector=detector, detector_model=detector_model, box_threshold=box_threshold, text_threshold=text_threshold
    )
    spec = pipeline_spec(starting, florence, sam, preset, device, dtype, min_confidence, nms, **detector_options)
    if starting is not None:
        spec.check_prompts()
    if port == 0:
        port = free_port(host)
    elif not port_is_free(host, port):
        raise UserError(f"Port {port} on {host} is in use (another app?): pass another --port")
    token = (os.environ.get(TOKEN_VARIABLE) or secrets.token_urlsafe(24)) if auth else None
    out = console()
    warning = exposure_warning(host, auth)
    if warning:
        out.print(warning, style="bold red", markup=False)
    spec.settings()  # the device and precision
    models = _load(spec)
    config = AppConfig(
        host=host,
        port=port,
        auth_token=token,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_pixels=max_pixels or None,
    )
    prompts = prompts_text(starting) if starting else None
    server = make_server(models, config, index, prompts)
    url = _url(host, port) + (f"login?token={token}" if token else "")
    if check:
        _check_once(server, url, token)
        return
    out.print(f"grounded-sam app: {url}  (Ctrl-C stops it)", markup=False)
    server.run()


def _load(spec):
    from grounded_sam.apps.web.models import AppModels, ModelChoices

    return ModelChoices.with_cached_presets(AppModels.from_spec(spec))


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"


def _check_once(server, url: str, token: str | None) -> None:
    """Starts the server on a thread, fetches the page and a session from it, stops it."""
    import json
    import urllib.request

    from grounded_sam.apps.web.serve import start_in_thread

    start_in_thread(server)
    try:
        base = url.split("login?")[0]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with urllib.request.urlopen(urllib.request.Request(base, headers=headers), timeout=30) as page:
            if b"<title>grounded-sam</title>" not in page.read():
                raise UserError(f"The app at {base} served something else")
        request = urllib.request.Request(base + "api/session", data=b"{}", method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=30) as reply:
            models = json.load(reply)["model"]
    finally:
        server.should_exit = True
    typer.echo(f"ok: {base} answers (models: {models['name']}, on {models['device']})")
