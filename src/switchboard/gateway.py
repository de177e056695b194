"""The running gateway: upstream clients, the model table and the stage chain, built once."""

from __future__ import annotations

from switchboard import catalog
from switchboard.config.schema import Settings
from switchboard.pipeline.auth import Authenticator, AuthStage
from switchboard.pipeline.chain import Handler, Stage, build_chain
from switchboard.pipeline.decode import DecodeStage
from switchboard.pipeline.images import ImageFetcher, InlineImagesStage
from switchboard.pipeline.invoke import invoke
from switchboard.pipeline.route import RouteStage
from switchboard.routing.table import build_clients, build_routes


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients = build_clients(settings)
        self.routes = build_routes(settings, self.clients)
        self.authenticator = Authenticator(settings.auth.master_key.get_secret_value())
        self.images = ImageFetcher(settings.images)
        # Model limits, capabilities and prices, with the config's overrides applied.
        self.catalog = catalog.build(settings)
        self.chain: Handler = build_chain(self.stages(), invoke)
        self.ready = False

    def stages(self) -> list[Stage]:
        """The request path, outermost first. A feature is a new entry here."""
        stages: list[Stage] = [
            AuthStage(self.authenticator),
            DecodeStage(),
            RouteStage(self.routes),
        ]
        if any(route.adapter.needs_inline_images(route.target) for route in self.routes.values()):
            stages.append(InlineImagesStage(self.images))
        return stages

    async def start(self) -> None:
        for client in self.clients.values():
            await client.start()
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        for client in self.clients.values():
            await client.close()
        await self.images.close()
