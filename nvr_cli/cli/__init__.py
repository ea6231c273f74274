"""The command line: parses options, calls the library, renders its results; errors as one line.

One module per command or command group; ``app`` holds the group and its error handling,
``options`` the options several commands share, ``render`` tables, JSON lines and progress.
Exit codes: 0 done; 1 a source or the storage failed; 2 bad options or settings; 130 interrupted.
"""

from __future__ import annotations

# the modules, not their commands, are bound here: `nvr_cli.cli.scan` stays the module (for patching too)
from nvr_cli.cli import (
    config,
    demo,
    detect,
    export,
    index,
    model,
    probe,
    prune,
    qr,
    record,
    run,
    scan,
    serve,
    service,
    status,
)
from nvr_cli.cli.app import NvrGroup, cli, main

for _command in (
    record.record,
    run.run,
    status.status,
    service.service,
    scan.scan,
    probe.probe,
    demo.demo,
    detect.detect,
    qr.qr,
    model.model_group,
    export.export_cmd,
    prune.prune,
    index.index_cmd,
    serve.serve,
    serve.web_group,
    config.config_group,
):
    cli.add_command(_command)

__all__ = ["NvrGroup", "cli", "main"]
