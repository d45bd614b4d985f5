"""``python -m orchestrator``: the operator's command line."""

from orchestrator.cli import main

raise SystemExit(main())
