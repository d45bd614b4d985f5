"""``python -m orchestrator``: the operator's command line."""

from orchestrator.cli.main import main

raise SystemExit(main())
