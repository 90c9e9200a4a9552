"""HTTP routers, one module per resource; ``edgefleet.server.app.ROUTERS`` registers them."""

__all__: list[str] = []
