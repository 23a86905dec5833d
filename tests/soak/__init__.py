"""The fault, load and security suite (``make soak``; the fast subset runs in ``make test``)."""
