"""``memory://``: one process, no persistence; the reference implementation of the contract.

One lock guards everything, so every operation is atomic. It is the store for users' own
tests and the model the other backends are checked against (the conformance suite).
"""

from conveyor.backends.memory.backend import MemoryBackend

__all__ = ["MemoryBackend"]
