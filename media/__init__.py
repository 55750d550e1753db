"""The media repository: content-addressed files on disk, thumbnails, media routes.

Uses homeserver.protocol, homeserver.storage and homeserver.services; only
homeserver/app.py imports this package, to mount its routes.
"""
