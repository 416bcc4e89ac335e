from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar

__all__ = ["Inject", "InjectMarker", "Named", "inject_arguments", "split_annotation"]

T = TypeVar("T")


class Named:
    """``Annotated[T, Named("aes")]``: the binding of ``T`` registered under a name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"Named() takes a non-empty string, got {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return f"Named({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Named) and other.name == self.name

    def __hash__(self) -> int:
        return hash((Named, self.name))


class InjectMarker:
    """Metadata that marks a parameter for injection (what ``Inject[T]`` carries)."""

    __slots__ = ("name",)

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "Inject" if self.name is None else f"Inject({self.name!r})"


if TYPE_CHECKING:
    # ``Inject[T]`` is ``T`` to a type checker. The named form ``Inject[T, "name"]`` works
    # at run time; typed code spells it ``Annotated[T, Named("name")]``.
    from typing import Union as Inject
else:

    class Inject:
        """``Inject[T]`` or ``Inject[T, "name"]``: a parameter tether fills in."""

        __slots__ = ()

        def __class_getitem__(cls, item: Any) -> Any:
            tp, name = inject_arguments(item)
            if name is None:
                return Annotated[tp, InjectMarker()]
            return Annotated[tp, InjectMarker(name), Named(name)]


def inject_arguments(item: Any) -> tuple[Any, str | None]:
    """``(type, name)`` from what ``Inject[...]`` was given."""
    if not isinstance(item, tuple):
        return item, None
    if len(item) != 2 or not isinstance(item[1], str):
        raise TypeError(f"Inject takes Inject[T] or Inject[T, 'name'], got Inject{list(item)}")
    return item[0], item[1]


def split_annotation(hint: Any) -> tuple[Any, str | None, bool]:
    """``(type, name, marked)`` for a parameter annotation.

    ``marked`` is true when the annotation carries ``Inject``; ``name`` comes from
    ``Inject[T, "name"]`` or ``Named``.
    """
    metadata = getattr(hint, "__metadata__", None)
    if metadata is None:
        return hint, None, False
    name: str | None = None
    marked = False
    for item in metadata:
        if isinstance(item, InjectMarker):
            marked = True
            name = item.name or name
        elif isinstance(item, Named):
            name = item.name
    return hint.__origin__, name, marked
