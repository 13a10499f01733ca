"""The Redis / Valkey backend (``pip install 'conveyor[redis]'``)."""

from conveyor.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
