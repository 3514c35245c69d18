"""A small registry of named factories, used for encoders, heads, losses and samplers.

Configs and the CLI name components by string; the registry turns a name plus keyword
parameters into an object, and rejects an unknown name or an unknown parameter with a
message that lists the valid ones.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generic, TypeVar

from twinshot.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of component.

    >>> heads = Registry("head")
    >>> @heads.register("cosine")
    ... class Cosine: ...
    >>> heads.names()
    ['cosine']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None

    def parameters(self, name: str) -> dict[str, Any]:
        """The factory's keyword parameters and their defaults (``inspect.Parameter.empty`` if none)."""
        sig = inspect.signature(self.get(name))
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        }

    def build(self, name: str, **params: Any) -> T:
        """Build the component ``name`` with ``params``; unknown parameters are an error."""
        factory = self.get(name)
        valid = self.parameters(name)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {', '.join(unknown)} for {self.kind} {name!r}; "
                f"valid: {', '.join(sorted(valid)) or '(none)'}"
            )
        return factory(**params)
