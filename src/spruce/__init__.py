"""spruce: own your vector data."""

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy, so `import spruce.records` stays light
    if name == "Client":
        from spruce.client import Client

        return Client
    if name == "copy":
        from spruce.client import copy

        return copy
    raise AttributeError(name)
