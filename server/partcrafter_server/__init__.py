"""PartCrafter inference server: `create_app(settings)` and the `partcrafter-server` command."""

__version__ = "0.1.0"
