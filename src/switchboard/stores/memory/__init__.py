"""In-process state for one instance: counters, cache and change feed in this process's memory."""
