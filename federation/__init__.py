"""The Server-Server API: keys, request signing, discovery, outbound client,
transaction queues, inbound PDUs, joins and the federation routes.

Spec: https://spec.matrix.org/v1.19/server-server-api/
"""
