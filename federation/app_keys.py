"""Typed keys under which the federation wiring hands its parts to route modules."""

from aiohttp import web

from federation.context import Federation

FEDERATION = web.AppKey("federation", Federation)
