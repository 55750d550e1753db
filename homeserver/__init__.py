"""A personal Matrix homeserver: client-server API, federation and media on PostgreSQL."""

__version__ = "0.1.0"
