"""Calibrations (issue 14): versioned files, never uncalibrated by accident, loaded without a
restart through the admin endpoint (a bad file refused, the running one kept), a canary share,
every trace naming its calibration, and two replicas on one PostgreSQL following a promotion."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from duetto.config import parse_config
from duetto.engine import Engine
from duetto.errors import ConfigError
from duetto.fitted import check_fitted, content_hash, stamp, uncalibrated, version_of
from duetto.gateway import GatewaySettings, create_app
from duetto.gateway.auth import ApiKey, hash_key

ADMIN, USER = "sk-admin-0123456789", "sk-user-0123456789"
CFG = {
    "models": {
        "slm": {"backend": "fake", "script": "local answer"},
        "llm": {"backend": "fake", "script": "remote answer", "card": {"location": "remote"}},
    },
    "target": "quality=0.9",
    "strategies": {
        "route": {"mode": "route", "models": ["slm", "llm"], "scorer": {"kind": "length"}},
        "fixed": {
            "mode": "route",
            "models": ["slm", "llm"],
            "scorer": {"kind": "length"},
            "threshold": 0.5,
        },
    },
}


def calibration(threshold: float | str, made_by: str = "test") -> dict[str, Any]:
    entry = {"threshold": threshold, "calibrator": None, "scorer": None, "verifier": None}
    state = {"format": "duetto-fitted/1", "target": "quality=0.9", "strategies": {"route": entry}}
    return stamp(state, made_by=made_by, created=0)


LOCAL = calibration(0.0)  # every short prompt stays on the SLM
REMOTE = calibration("inf")  # everything escalates


# --- the file -------------------------------------------------------------------------------


def test_a_stamp_names_the_content_and_its_maker() -> None:
    assert LOCAL["version"] == {"hash": content_hash(LOCAL), "created": "1970-01-01T00:00:00Z"}
    assert LOCAL["made_by"] == "test" and version_of(LOCAL) == LOCAL["version"]["hash"]
    assert version_of(LOCAL) != version_of(REMOTE)
    assert version_of(calibration(0.0, made_by="other")) == version_of(LOCAL)  # content only
    check_fitted(LOCAL, ["route"])


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda s: s["strategies"]["route"].update(threshold=math.nan), "threshold"),
        (lambda s: s["strategies"]["route"].update(threshold="high"), "threshold"),
        (lambda s: s["strategies"]["route"].update(threshold=None), "threshold"),
        (lambda s: s["strategies"].update(ghost=s["strategies"]["route"]), "strategies.ghost"),
        (lambda s: s.update(format="other/1"), "format"),
        (lambda s: s.update(target="quality=0.5"), "version"),  # edited after stamping
    ],
)
def test_bad_files_are_refused(edit: Any, path: str) -> None:
    import copy

    state = copy.deepcopy(LOCAL)
    edit(state)
    with pytest.raises(ConfigError) as err:
        check_fitted(state, ["route", "fixed"])
    assert path in err.value.path


def test_uncalibrated_lists_thresholded_strategies_the_file_leaves_open() -> None:
    cfg = parse_config(CFG)
    assert uncalibrated(cfg, None) == ["route"]
    assert uncalibrated(cfg, LOCAL) == []


# --- the gateway ------------------------------------------------------------------------------


def settings(db: str, prefix: str = "duetto_", **kw: Any) -> GatewaySettings:
    keys = [ApiKey("ops", hash_key(ADMIN)), ApiKey("app", hash_key(USER))]
    kw.setdefault("calibration_poll_s", 0)
    return GatewaySettings(db=db, store_prefix=prefix, keys=keys, admin_keys=["ops"], **kw)


@contextlib.asynccontextmanager
async def gateway(
    db: str, fitted: dict[str, Any] | None = LOCAL, prefix: str = "duetto_", **kw: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(Engine(parse_config(CFG), fitted=fitted), settings(db, prefix, **kw))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield app, client


async def ask(client: httpx.AsyncClient, model: str = "route") -> tuple[str, dict[str, Any]]:
    r = await client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {USER}"},
    )
    assert r.status_code == 200, r.text
    trace_id = r.headers["x-duetto-trace-id"]
    stored = await client.get(f"/v1/traces/{trace_id}", headers={"authorization": f"Bearer {USER}"})
    return r.json()["choices"][0]["message"]["content"], stored.json()


async def promote(client: httpx.AsyncClient, body: Any, key: str = ADMIN) -> httpx.Response:
    return await client.post(
        "/admin/calibration", json=body, headers={"authorization": f"Bearer {key}"}
    )


async def test_an_uncalibrated_strategy_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        async with gateway(str(tmp_path / "g.db"), fitted=None):
            pass
    message = str(err.value)
    assert "'route'" in message and "duetto fit" in message and "threshold" in message
    assert err.value.path == "strategies.route"


async def test_a_shadow_only_candidate_may_run_uncalibrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from duetto.gateway import serving

    monkeypatch.setattr(serving, "shadow_candidates", lambda _settings: {"route"})
    async with gateway(str(tmp_path / "g.db"), fitted=None) as (app, _):
        assert app.state.gateway.engine.strategies["route"].policy is not None


async def test_the_embedded_defaults_serve_the_shipped_calibration() -> None:
    from duetto.config import load_default_config
    from duetto.fitted import default_calibration

    shipped = default_calibration()
    cfg = load_default_config()
    check_fitted(shipped, cfg.strategies)
    assert shipped["made_by"].startswith("python scripts/make_default_calibration.py")
    assert "traffic" in shipped["tuned_on"]
    assert uncalibrated(cfg, shipped) == []  # every thresholded default strategy is covered


async def test_a_promoted_calibration_serves_without_a_restart(tmp_path: Path) -> None:
    async with gateway(str(tmp_path / "g.db")) as (_, client):
        text, stored = await ask(client)
        assert text == "local answer" and stored["calibration_version"] == version_of(LOCAL)
        r = await promote(client, {"calibration": REMOTE})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == version_of(REMOTE) and r.json()["status"] == "serving"
        text, stored = await ask(client)
        assert text == "remote answer" and stored["calibration_version"] == version_of(REMOTE)
        # a raw model's trace names the calibration too (it is what the gateway serves with)
        _, stored = await ask(client, "llm")
        assert stored["calibration_version"] == version_of(REMOTE)
        status = (
            await client.get("/admin/calibration", headers={"authorization": f"Bearer {ADMIN}"})
        ).json()
        assert status["version"] == version_of(REMOTE) and status["history"][0]["by"] == "ops"
    # it survives a restart: the store's promotion is newer than the file given at start
    async with gateway(str(tmp_path / "g.db")) as (_, client):
        text, stored = await ask(client)
        assert text == "remote answer" and stored["calibration_version"] == version_of(REMOTE)


@pytest.mark.parametrize(
    "body",
    [
        {
            "calibration": {
                **REMOTE,
                "strategies": {"route": {**REMOTE["strategies"]["route"], "threshold": "nan"}},
            }
        },
        {"calibration": calibration(0.2) | {"strategies": {"nope": LOCAL["strategies"]["route"]}}},
        {"calibration": {"format": "duetto-fitted/0", "strategies": {}}},
        {"calibration": "not an object"},
        {"calibration": REMOTE, "canary_share": 1.5},
        [1, 2],
    ],
)
async def test_a_bad_file_is_refused_and_the_running_one_kept(tmp_path: Path, body: Any) -> None:
    async with gateway(str(tmp_path / "g.db")) as (_, client):
        r = await promote(client, body)
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "calibration_refused" and error["type"] == "invalid_request_error"
        text, stored = await ask(client)
        assert text == "local answer" and stored["calibration_version"] == version_of(LOCAL)


async def test_only_admin_keys_may_promote(tmp_path: Path) -> None:
    async with gateway(str(tmp_path / "g.db")) as (_, client):
        assert (await promote(client, {"calibration": REMOTE}, key=USER)).status_code == 403
        assert (await promote(client, {"calibration": REMOTE}, key="sk-wrong")).status_code == 401
        text, _ = await ask(client)
        assert text == "local answer"


async def test_a_canary_decides_its_share_and_is_marked(tmp_path: Path) -> None:
    async with gateway(str(tmp_path / "g.db")) as (app, client):
        app.state.gateway.calibrations._rng.seed(7)
        r = await promote(client, {"calibration": REMOTE, "canary_share": 0.5})
        assert r.status_code == 200 and r.json()["status"] == "canary"
        assert r.json()["version"] == version_of(LOCAL)  # the current one still serves
        seen = [await ask(client) for _ in range(40)]
        canary = [s for t, s in seen if s.get("canary")]
        assert 10 <= len(canary) <= 30
        for text, stored in seen:
            want = version_of(REMOTE) if stored.get("canary") else version_of(LOCAL)
            assert stored["calibration_version"] == want
            assert text == ("remote answer" if stored.get("canary") else "local answer")
        # `fixed` is not in the canary's file: never canaried
        assert not any([(await ask(client, "fixed"))[1].get("canary") for _ in range(10)])
        stop = await client.delete(
            "/admin/calibration/canary", headers={"authorization": f"Bearer {ADMIN}"}
        )
        assert stop.json()["stopped"] and stop.json()["canary"] is None
        assert not any([(await ask(client))[1].get("canary") for _ in range(10)])


# --- two replicas on one PostgreSQL (the machine's server; this test does not skip) ----------

PG_URL = "postgresql://postgres@localhost:5432/test"


async def test_two_replicas_on_postgresql_follow_a_promotion() -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    try:
        async with (
            gateway(PG_URL, prefix=prefix, calibration_poll_s=0.05) as (a_app, a),
            gateway(PG_URL, prefix=prefix, calibration_poll_s=0.05) as (b_app, b),
        ):
            assert a_app.state.store.dialect == "postgresql"
            assert (await ask(b))[0] == "local answer"
            r = await promote(a, {"calibration": REMOTE})
            assert r.status_code == 200
            for _ in range(100):  # replica b polls every 50 ms
                if b_app.state.gateway.calibrations.version == version_of(REMOTE):
                    break
                await asyncio.sleep(0.05)
            text, stored = await ask(b)
            assert text == "remote answer"
            assert stored["calibration_version"] == version_of(REMOTE)
            # and a canary started on b reaches a
            r = await promote(b, {"calibration": LOCAL, "canary_share": 0.25})
            for _ in range(100):
                if a_app.state.gateway.calibrations.canary is not None:
                    break
                await asyncio.sleep(0.05)
            canary = a_app.state.gateway.calibrations.canary
            assert canary is not None and canary.share == 0.25
            assert canary.version == version_of(LOCAL)
    finally:
        await _drop(prefix)


async def _drop(prefix: str) -> None:
    from duetto.gateway.billing import Billing
    from duetto.gateway.calibration import _table
    from duetto.store import TraceStore

    store = await TraceStore(PG_URL, prefix=prefix).start()
    try:
        await store.call(lambda conn: _table(prefix).drop(conn, checkfirst=True))
        billing = Billing(store)
        await billing.start()
        await billing.drop_all()
        await store.drop_all()
    finally:
        await store.close()


def test_a_promotion_over_a_real_socket(tmp_path: Path) -> None:
    from duetto.testing.server_thread import ServerThread

    app = create_app(Engine(parse_config(CFG), fitted=LOCAL), settings(str(tmp_path / "g.db")))
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as client:
        user = {"authorization": f"Bearer {USER}"}
        body = {"model": "route", "messages": [{"role": "user", "content": "hi"}]}
        first = client.post("/v1/chat/completions", json=body, headers=user)
        assert first.json()["choices"][0]["message"]["content"] == "local answer"
        r = client.post(
            "/admin/calibration",
            json={"calibration": REMOTE},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 200, r.text
        second = client.post("/v1/chat/completions", json=body, headers=user)
        assert second.json()["choices"][0]["message"]["content"] == "remote answer"
        stored = client.get(f"/v1/traces/{second.headers['x-duetto-trace-id']}", headers=user)
        assert stored.json()["calibration_version"] == version_of(REMOTE)


async def test_the_loop_controller_steers_the_promoted_strategies(tmp_path: Path) -> None:
    from duetto.config import AuditConfig

    async with gateway(str(tmp_path / "g.db"), audit=AuditConfig(share=0.0)) as (app, client):
        controller = app.state.loop.controller
        assert controller is not None and "route" in controller.strategies
        assert (await promote(client, {"calibration": REMOTE})).status_code == 200
        served = app.state.gateway.engine.strategies["route"]
        assert controller.strategies["route"] is served and served.threshold == math.inf


async def test_a_promotion_replaces_the_controllers_stored_move(tmp_path: Path) -> None:
    """A threshold the audit controller moved and stored must not outlive a promotion (a restart
    would otherwise re-apply the old move over the promoted calibration)."""
    import asyncio

    from duetto.config import AuditConfig

    async with gateway(str(tmp_path / "g.db"), audit=AuditConfig(share=0.0)) as (app, client):
        controller = app.state.loop.controller
        key = controller.key("route")
        moved = {"threshold": 0.3, "moves": 1, "moved_at": 0.0, "reason": "audit"}
        assert await controller.store.put_state(key, moved, None)
        assert (await promote(client, {"calibration": REMOTE})).status_code == 200
        for _ in range(100):
            row = await controller.store.get_state(key)
            if row is not None and row[1]["threshold"] == math.inf:
                break
            await asyncio.sleep(0.02)
        assert row is not None and row[1]["threshold"] == math.inf and row[1]["moves"] == 0
