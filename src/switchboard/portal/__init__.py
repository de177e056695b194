"""The catalog a developer portal reads (``GET /admin/v1/catalog``): what a caller's tenant may
discover (published prompt APIs, REST services, models), each with the caller team's
subscription state. Built from one :class:`~switchboard.portal.sources.Source` per kind, so a
new kind is one new source (docs/portal.md)."""

from switchboard.portal.catalog import KINDS, CatalogPage, CatalogQuery, PortalCatalog
from switchboard.portal.sources import ApiSource, Entry, ModelSource, ServiceInfo, ServiceSource, Source

__all__ = [
    "KINDS", "ApiSource", "CatalogPage", "CatalogQuery", "Entry", "ModelSource", "PortalCatalog",
    "ServiceInfo", "ServiceSource", "Source",
]
