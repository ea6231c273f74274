"""The review page: `nvr-cli serve`, its JSON API under /api/, and the static page it serves."""
