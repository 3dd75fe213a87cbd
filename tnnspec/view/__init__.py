"""``tnnspec view FILE``: a live authoring view in the browser.

A local page (127.0.0.1 only) shows the area graph and the unrolled picture of the file with
pan/zoom and details on hover, the summary table and the plan, and every diagnostic as
``file:line:col``; it updates within a second of each save of the file or of a file it includes.
While the file has errors the pictures stay at the last valid version, marked stale.

- :class:`ViewState` (:mod:`tnnspec.view.state`): builds the state shown, rebuilt only when a
  watched file changed;
- :class:`ViewServer` (:mod:`tnnspec.view.server`): the HTTP server and its watcher thread.
"""

from __future__ import annotations

from .server import ViewServer
from .state import ViewState, build_picture

__all__ = ["ViewServer", "ViewState", "build_picture"]
