"""Reading the settings: a YAML config file (``loader``) or the embedded default (``embedded``),
validated against ``config.schema`` and each provider type's own options. It sits above
``providers/`` because those options belong to the provider types; ``config/`` below knows
only the shape of the settings."""
