"""The OpenAI-compatible gateway (`duetto serve`). Needs the `serve` extra.

    from duetto.gateway import create_app, GatewaySettings
    app = create_app(Engine(load_config("duetto.yaml")))   # then run it with uvicorn

Importing this package does not import FastAPI; `create_app` does.
"""

from duetto.gateway.app import create_app
from duetto.gateway.auth import ApiKey
from duetto.gateway.settings import GatewaySettings

__all__ = ["ApiKey", "GatewaySettings", "create_app"]
