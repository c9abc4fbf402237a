"""Progress bars: tqdm's, on a terminal or in a notebook, and none when output goes to a file or pipe."""

from __future__ import annotations

import sys


def progress_bar(total: int, description: str, initial: int = 0, enabled: bool = True, unit: str = "img"):
    """A tqdm bar for ``total`` items (a context manager with ``update(n)``).

    On a terminal it is tqdm's text bar; in a Jupyter notebook its widget when ipywidgets is installed, else the text
    bar (tqdm.auto would warn ``IProgress not found`` and show nothing); when output is piped, none.
    """
    from tqdm.std import tqdm as text_bar

    if not enabled:
        return text_bar(total=total, disable=True)
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401 -- only whether it is there
            from tqdm.notebook import tqdm as widget_bar

            return widget_bar(total=total, initial=initial, unit=unit, desc=description)
        except ImportError:
            return text_bar(total=total, initial=initial, unit=unit, desc=description, file=sys.stdout)
    return text_bar(total=total, initial=initial, unit=unit, desc=description, disable=None)
