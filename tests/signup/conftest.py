"""The service test fixtures (a client with a write and a read token) for POST /v1/signups."""

from tests.serve.conftest import client, client_factory  # noqa: F401
