"""Client-Server API routes, one module per spec module.

Spec: https://spec.matrix.org/v1.19/client-server-api/
"""
