"""The release, in one place (the package's ``__init__`` and every module that shows it read it here)."""

__version__ = "2.0.0"
