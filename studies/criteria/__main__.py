"""``python -m studies.criteria`` (from the repository root): the criteria study."""

from .run import main

raise SystemExit(main())
