"""Browser tests of the web UI: headless Chromium (Playwright) against a real aggregator."""
