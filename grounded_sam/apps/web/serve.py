"""Starting the app: in the foreground (``grounded-sam app``), or on a thread for a notebook cell (:func:`show_app`).

uvicorn serves it with its access log off (it would print every path and query) and no server header. There are no
share links and no outgoing calls: the app listens on 127.0.0.1 unless told otherwise, and then warns.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path

from .guards import AppConfig
from .models import AppModels, ModelChoices
from .server import create_app

NOTEBOOK_FRAMES = ("vscode-webview:",)  # VS Code shows notebook output in webviews of this scheme
PORT_TRIES = 100  # a notebook takes the next free port from the one asked for, as Jupyter and Gradio do


def exposure_warning(host: str, auth: bool) -> str | None:
    """The warning to print when the app listens beyond this machine (None on a loopback address)."""
    try:
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:  # a host name: it may resolve to anything
        pass
    guard = "with the token below" if auth else "WITHOUT a password (add --auth)"
    return (
        f"WARNING: listening on {host}: anyone who can reach this machine on that address can use the app {guard}, "
        "see its images and change the dataset. Traffic is plain HTTP: outside a trusted network use an SSH tunnel "
        "or a TLS proxy instead."
    )


def make_server(models, config: AppConfig | None = None, dataset=None, prompts: str | None = None):
    """A ``uvicorn.Server`` for the app (not started): ``server.run()`` blocks, :func:`start_in_thread` does not."""
    import uvicorn

    config = config or AppConfig()
    app = create_app(models, config, dataset, prompts)
    settings = uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", access_log=False, server_header=False
    )
    return uvicorn.Server(settings)


def start_in_thread(server, timeout: float = 60.0) -> threading.Thread:
    """Runs ``server`` on a daemon thread (its own event loop, so it works beside Jupyter's) until it listens."""
    thread = threading.Thread(target=server.run, daemon=True, name="grounded-sam-app")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            config = server.config
            raise OSError(f"The app did not start on {config.host}:{config.port} (is the port in use?)")
        time.sleep(0.02)
    return thread


def listening_port(server) -> int:
    """The port a started server listens on (the one given, or the one the system picked for port 0)."""
    return server.servers[0].sockets[0].getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the system's pick)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def show_app(model=None, dataset: str | Path | None = None, port: int = 7860, height: int = 820, **options):
    """The app inline in a notebook cell: ``grounded_sam.show_app(model)`` as a cell's last line.

    Starts the app on 127.0.0.1 on a daemon thread (the first free port from ``port``) and returns an
    ``IPython.display.IFrame`` of it; ``frame.server.should_exit = True`` stops it.

    Args:
        model: a loaded ``GroundedSAM2`` whose models the app uses (nothing more is loaded), or None to load them
            from ``options`` (``GroundedSAM2``'s: ``preset``, ``florence``, ``sam``, ``device``, ``dtype``...).
        dataset: a folder written by ``label``, to review and correct.
        port: where to start looking for a free port.
        height: of the frame, pixels.

    The browser must run on the kernel's machine (local Jupyter, VS Code). On Colab, pass the port to
    ``google.colab.output.serve_kernel_port_as_iframe(frame.port)``; on a remote Jupyter use jupyter-server-proxy.
    """
    from IPython.display import IFrame

    models = _notebook_models(model, options)
    for candidate in range(port, port + PORT_TRIES):
        if port_is_free("127.0.0.1", candidate):
            break
    else:
        raise OSError(f"No free port in {port}..{port + PORT_TRIES - 1}; pass another port=...")
    server = make_server(models, AppConfig(port=candidate, frame_ancestors=NOTEBOOK_FRAMES), dataset)
    start_in_thread(server)
    frame = IFrame(f"http://127.0.0.1:{candidate}/", width="100%", height=height)
    frame.server, frame.port = server, candidate
    return frame


def _notebook_models(model, options: dict) -> AppModels | ModelChoices:
    if model is not None:
        if options:
            raise TypeError(f"Give either a loaded model or the options to load one, not both: {sorted(options)}")
        return AppModels.from_pipeline(model, "this notebook's model")
    from grounded_sam.pipeline.spec import PipelineSpec

    return ModelChoices.with_cached_presets(AppModels.from_spec(PipelineSpec(**options)))
