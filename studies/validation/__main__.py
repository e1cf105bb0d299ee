"""``python -m studies.validation`` (from the repository root): the validation study."""

from .run import main

raise SystemExit(main())
