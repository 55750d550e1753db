"""Pure Matrix rules: no I/O, no asyncio, no database.

Everything here takes data and returns data, so that it can be tested with the
spec's own examples and shared by the client API and federation alike.
"""
