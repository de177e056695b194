"""State shared by every instance through Redis: counters, cache and change feed."""
