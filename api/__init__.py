"""Interfaces people touch: the FastAPI app, auth, routes and the `cairn` CLI."""
