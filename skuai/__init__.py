"""The `skuai` command line: the demo, the local stack, and the tools around the service."""

__version__ = "0.1.0"
