"""The web page at `/ui`: recommendations with reasons, feedback buttons, search, chat and
an operator dashboard, served by the same FastAPI app (templates and scripts ship in this
package; no separate server, no build step).

`create_app` mounts it with `app.include_router(ui_router())`.
"""

from __future__ import annotations

from recsage.serving.ui.router import ui_router

__all__ = ["ui_router"]
