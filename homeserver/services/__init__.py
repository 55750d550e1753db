"""Domain logic: the event pipeline, sync, rooms, accounts. Knows storage and protocol, not HTTP."""
