// The review page: hand-written, no build step, talks only to /api/ (docs/web-api.md).
"use strict";
document.getElementById("app").textContent = "nvr-cli";
