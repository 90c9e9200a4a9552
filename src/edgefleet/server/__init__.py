"""The control plane: FastAPI app, services, store, blob storage.

Entry points: ``create_app(settings)``, ``serve(settings)``, ``create_operator_token(settings, name, role)``,
``Settings.from_env(**overrides)``.
"""

from edgefleet.server.app import create_app
from edgefleet.server.main import create_operator_token, serve
from edgefleet.server.settings import Settings

__all__ = ["Settings", "create_app", "create_operator_token", "serve"]
