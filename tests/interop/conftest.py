"""Fixtures of the interoperability tests: the Playwright browser (one for the session,
shared by every module that drives the web application)."""

from tests.interop.webapp import browser

__all__ = ["browser"]
