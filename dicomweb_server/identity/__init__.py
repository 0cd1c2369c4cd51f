"""Adapters to identity providers (OpenID Connect over HTTPS)."""
