"""``/services/{name}/{path}``: plain REST services behind the gateway (docs/services.md)."""

from switchboard.http.services.edge import ServicesEndpoint, is_services_path

__all__ = ["ServicesEndpoint", "is_services_path"]
