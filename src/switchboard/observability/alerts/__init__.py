"""Alerts (docs/observability.md, "Alerts"): rules on deployments' error rate and latency, on
breaker trips and on budget thresholds; incidents shared by every instance through the
IncidentStore; signed, retried, deduplicated webhook events."""
