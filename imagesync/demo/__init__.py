"""The local demo and the building blocks it shares with the tests (PKI, HTTPS list server, demo world)."""
