"""Plain REST services behind the gateway (docs/services.md): the live table of services (the
YAML's and those registered through the admin API), the safe upstream target of a request, the
stages of their chain and the proxy that forwards to them."""

from switchboard.services.capture import ServiceCaptureStage
from switchboard.services.context import ServiceContext
from switchboard.services.proxy import ServiceProxy
from switchboard.services.stages import (
    ServiceRateLimitStage,
    ServiceStage,
    ServiceSubscriptionStage,
    ServiceUsageStage,
)
from switchboard.services.table import Service, ServiceTable, header_aad

__all__ = [
    "Service",
    "ServiceCaptureStage",
    "ServiceContext",
    "ServiceProxy",
    "ServiceRateLimitStage",
    "ServiceStage",
    "ServiceSubscriptionStage",
    "ServiceTable",
    "ServiceUsageStage",
    "header_aad",
]
