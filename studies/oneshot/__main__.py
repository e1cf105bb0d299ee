"""``python -m studies.oneshot`` (from the repository root): the one-shot study."""

from .run import main

raise SystemExit(main())
