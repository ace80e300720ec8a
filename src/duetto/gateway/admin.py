"""Admin routes (calibration promotion, `duetto.gateway.calibration`), for admin keys only.

An admin key is a gateway key with `admin: true` in the config; a gateway without keys (local
use, where every caller is let in) lets every caller administer too. Errors are OpenAI-style
bodies: 401 without a key, 403 for a key that is not an admin's, 400 for a calibration that is
refused (the running one is kept; the message says why).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from duetto.errors import ConfigError
from duetto.gateway.protocol import error_body

if TYPE_CHECKING:
    from fastapi import FastAPI

    from duetto.gateway.serving import Gateway


def install_admin(app: "FastAPI", gw: "Gateway", loop: Any = None) -> None:
    """The admin routes; `loop` (the live loop, if any) follows a promoted calibration: its
    controller then steers the newly built strategies."""
    from fastapi import Depends, Request
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    pending: set[asyncio.Task[None]] = set()

    def follow(built: dict[str, Any]) -> None:
        controller = getattr(loop, "controller", None)
        if controller is not None:
            for name in controller.strategies:
                if name in built:
                    controller.strategies[name] = built[name]
                    # the promoted threshold replaces a moved one in the store too, else a
                    # restart would re-apply the controller's old move over the promotion
                    task = asyncio.get_running_loop().create_task(controller.forget(name))
                    pending.add(task)
                    task.add_done_callback(pending.discard)

    gw.calibrations.on_change.append(follow)
    bearer = HTTPBearer(auto_error=False, description="An admin API key")

    class Denied(Exception):
        def __init__(self, status: int, message: str, code: str) -> None:
            self.status, self.message, self.code = status, message, code

    @app.exception_handler(Denied)
    async def _denied(_: Request, exc: Denied) -> JSONResponse:
        body = error_body(exc.message, "invalid_request_error", exc.code)
        return JSONResponse(body, status_code=exc.status)

    async def admin(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Any:
        who = await gw.keys.authenticate(creds.credentials if creds else None)
        if who is None:
            raise Denied(401, "Incorrect or missing API key", "invalid_api_key")
        if not gw.keys.open and who.name not in gw.settings.admin_keys:
            raise Denied(403, f"key {who.name!r} is not an admin key", "not_admin")
        return who

    def refused(message: str, param: str | None = None) -> JSONResponse:
        body = error_body(message, "invalid_request_error", "calibration_refused", param)
        return JSONResponse(body, status_code=400)

    @app.get("/admin/calibration", summary="The calibration serving, the canary, the history")
    async def calibration_status(_: Annotated[Any, Depends(admin)]) -> dict[str, Any]:
        cal = gw.calibrations
        history = await cal.book.history()
        return {**cal.status(), "history": [p.summary() for p in history]}

    @app.post("/admin/calibration", summary="Load a calibration without a restart")
    async def calibration_post(request: Request, who: Annotated[Any, Depends(admin)]) -> Any:
        try:
            body = await request.json()
        except ValueError as exc:
            return refused(f"Malformed JSON body: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("calibration"), dict):
            return refused('expected {"calibration": {...}, "canary_share": 0.1}', "calibration")
        share = body.get("canary_share", 1.0)
        if isinstance(share, bool) or not isinstance(share, int | float):
            return refused("canary_share must be a number in (0, 1]", "canary_share")
        try:
            promotion = await gw.calibrations.submit(body["calibration"], float(share), who.name)
        except ConfigError as exc:
            path = f"calibration.{exc.path}" if exc.path != "canary_share" else exc.path
            return refused(f"calibration refused, {gw.calibrations.version} kept: {exc}", path)
        return {
            "promoted": promotion.summary(),
            "status": "canary" if promotion.share < 1.0 else "serving",
            **gw.calibrations.status(),
        }

    @app.delete("/admin/calibration/canary", summary="Stop the canary")
    async def calibration_stop_canary(who: Annotated[Any, Depends(admin)]) -> dict[str, Any]:
        promotion = await gw.calibrations.stop_canary(who.name)
        return {
            "stopped": promotion is not None,
            **gw.calibrations.status(),
        }
