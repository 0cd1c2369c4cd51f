"""Fixtures of the interoperability tests: the Playwright browser of the modules that
drive the web application."""

from tests.interop.webapp import browser

__all__ = ["browser"]
