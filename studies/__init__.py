"""Studies run on top of the phasetrans library; not part of the installed package.

Run from the repository root, e.g. ``python -m studies.validation --out docs``."""
