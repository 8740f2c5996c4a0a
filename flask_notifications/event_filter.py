"""Composable event filters.

Any :class:`EventFilter` combines with ``&`` (and), ``|`` (or), ``^`` (xor)
and ``~`` (not); :class:`Not` is the same as ``~``. Chains such as
``a & b & c`` flatten into one :class:`And` of three terms, and evaluation
short-circuits, so a long composed filter costs one call per term at most.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class EventFilter:
    """Base class of every filter: override :meth:`filter`.

    A filter is also callable: ``f(event)`` is ``f.filter(event)``.
    """

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        """Return whether ``event`` passes.

        :param event: the :class:`~flask_notifications.event.Event` to test.
        """
        raise NotImplementedError

    def __call__(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return self.filter(event, *args, **kwargs)

    def __and__(self, other: object) -> EventFilter:
        if not isinstance(other, EventFilter):
            return NotImplemented
        return And(self, other)

    def __or__(self, other: object) -> EventFilter:
        if not isinstance(other, EventFilter):
            return NotImplemented
        return Or(self, other)

    def __xor__(self, other: object) -> EventFilter:
        if not isinstance(other, EventFilter):
            return NotImplemented
        return Xor(self, other)

    def __invert__(self) -> EventFilter:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "an EventFilter has no truth value: combine filters with &, |, ^ and ~ "
            "(Python's and/or/not cannot be overridden), or call it on an event"
        )

    def __repr__(self) -> str:
        params = ", ".join(f"{v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def _check_operands(name: str, filters: tuple[object, ...]) -> None:
    for operand in filters:
        if not isinstance(operand, EventFilter):
            raise TypeError(f"{name}() takes EventFilter operands, not {type(operand).__name__}")


class _Composite(EventFilter):
    _symbol = ""

    def __init__(self, *filters: EventFilter) -> None:
        _check_operands(type(self).__name__, filters)
        if len(filters) < 2:
            raise TypeError(f"{type(self).__name__}() needs at least two filters")
        flat: list[EventFilter] = []
        for f in filters:
            flat.extend(f.filters if type(f) is type(self) else (f,))  # type: ignore[attr-defined]
        self.filters: tuple[EventFilter, ...] = tuple(flat)
        # Bound methods, looked up once: evaluation is the hot path of send().
        self._checks = tuple(f.filter for f in flat)

    def __repr__(self) -> str:
        return "(" + f" {self._symbol} ".join(repr(f) for f in self.filters) + ")"


class And(_Composite):
    """Passes when every filter passes (``a & b``)."""

    _symbol = "&"

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        if args or kwargs:
            return all(check(event, *args, **kwargs) for check in self._checks)
        for check in self._checks:
            if not check(event):
                return False
        return True


class Or(_Composite):
    """Passes when at least one filter passes (``a | b``)."""

    _symbol = "|"

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        if args or kwargs:
            return any(check(event, *args, **kwargs) for check in self._checks)
        for check in self._checks:
            if check(event):
                return True
        return False


class Xor(_Composite):
    """Passes when an odd number of filters pass (``a ^ b``)."""

    _symbol = "^"

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        result = False
        for check in self._checks:
            result ^= bool(check(event, *args, **kwargs))
        return result


class Not(EventFilter):
    """Passes when ``event_filter`` does not (``~event_filter``).

    :param event_filter: the filter to negate.
    """

    def __init__(self, event_filter: EventFilter) -> None:
        _check_operands("Not", (event_filter,))
        self.event_filter = event_filter
        self._check = event_filter.filter

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return not self._check(event, *args, **kwargs)

    def __invert__(self) -> EventFilter:
        return self.event_filter

    def __repr__(self) -> str:
        return f"~{self.event_filter!r}"


__all__ = ["And", "EventFilter", "Not", "Or", "Xor"]
