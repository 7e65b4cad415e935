"""A tiny name -> object registry (a dict plus a decorator).

Choices made by name on the command line (samplers, objectives, paths, backbones) go
through a :class:`Registry`, so an unknown name fails early with the list of valid ones.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from genimage.errors import GenimageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects of one kind.

    Args:
        kind: What the registry holds, used in error messages ("sampler", "path", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that stores the decorated object under ``name``."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Return the object called ``name`` or raise a :class:`GenimageError` listing valid names."""
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items))
            raise GenimageError(f"unknown {self.kind} {name!r}; choose one of: {valid}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
