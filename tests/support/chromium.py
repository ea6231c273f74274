"""How the tests and benches start Debian's Chromium headless here (Playwright drives it; its own
browser download cannot work on this network): as root, no sandbox, and nothing that reaches for
hosts it cannot reach."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
