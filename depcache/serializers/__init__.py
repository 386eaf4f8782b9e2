"""Serializers: how cached values become bytes and come back exactly."""

from __future__ import annotations

from ..config import ConfigBase, load_class
from ..errors import ConfigError
from .base import BaseSerializer
from .json import JSONSerializer
from .pickle import SignedPickleSerializer

__all__ = ["BaseSerializer", "JSONSerializer", "SignedPickleSerializer", "serializer_from_config"]


def serializer_from_config(config: ConfigBase) -> BaseSerializer:
    """Instantiate the serializer named by ``config.serializer_class`` (JSONSerializer if none).

    Raises:
        ConfigError: the class cannot be loaded or is not a BaseSerializer.
    """
    if not config.serializer_class:
        return JSONSerializer()
    cls = load_class(config.serializer_class, setting="DEP_CACHE_SERIALIZER")
    if not issubclass(cls, BaseSerializer):
        raise ConfigError(
            f"DEP_CACHE_SERIALIZER={config.serializer_class!r} is not a depcache.BaseSerializer"
        )
    instance: BaseSerializer = cls()
    return instance
