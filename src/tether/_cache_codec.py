"""How cache values become bytes and back: JSON or msgpack in a small frame, never pickle.

A stored value is ``b"TC\\x01"`` + one flags byte + the payload. The flags say the
format (JSON or msgpack), whether the payload is zlib-compressed, and whether it is an
error record (``@cached(cache_errors=...)``). Reading checks the frame before parsing
anything, parses with a data-only parser (``json.loads`` or ``msgpack.unpackb`` with
extension types refused), and caps the decompressed size, so bytes someone else wrote
to the key (a pickle, a zip bomb) are rejected, never executed.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgpack  # type: ignore[import-untyped]

from .exceptions import TetherError

Format = Literal["msgpack", "json"]

MAGIC: Final = b"TC\x01"
_JSON: Final = 0x00
_MSGPACK: Final = 0x01
_ZLIB: Final = 0x02
_ERROR: Final = 0x04
_KNOWN: Final = _MSGPACK | _ZLIB | _ERROR


class SerializationError(TetherError, TypeError):
    """A value cannot be stored in a cache: its format cannot encode it (``type_name``
    names the offending type), or it is larger than ``max_value_size``."""

    def __init__(self, cache: str, type_name: str, reason: str) -> None:
        super().__init__(cache, type_name, reason)
        self.cache = cache
        self.type_name = type_name
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"cache '{self.cache}' cannot store a value of type {self.type_name}: "
            f"{self.reason}. Hint: store plain data (dict, list, str, int, float, bool, None; "
            f"bytes with msgpack), e.g. model.model_dump(mode='json'), or annotate the "
            f"@cached function's return type so the cache converts it for you."
        )


class CorruptValue(ValueError):
    """Bytes read from Redis that are not a value this codec wrote (never parsed further)."""


@dataclass(frozen=True, slots=True)
class CachedError:
    """An exception stored by ``@cached(cache_errors=...)``: its class path and plain args."""

    type_path: str
    args: tuple[str | int | float | bool | None, ...]

    @classmethod
    def of(cls, error: BaseException) -> CachedError | None:
        """The record of ``error``, or None when its args are not plain scalars (then
        it cannot be rebuilt faithfully and is not cached)."""
        args = error.args
        if not all(a is None or isinstance(a, str | int | float | bool) for a in args):
            return None
        kind = type(error)
        return cls(f"{kind.__module__}.{kind.__qualname__}", tuple(args))

    def rebuild(self, allowed: tuple[type[BaseException], ...]) -> BaseException | None:
        """A fresh exception of the recorded class, if that class is in ``allowed``
        (only classes the caller listed are ever constructed); else None."""
        for kind in allowed:
            if f"{kind.__module__}.{kind.__qualname__}" == self.type_path:
                try:
                    return kind(*self.args)
                except Exception:
                    return None
        return None


class Codec:
    """Encodes values as framed JSON or msgpack, compressing large payloads."""

    __slots__ = ("cache", "compress_above", "format", "max_size")

    def __init__(
        self, cache: str, format: Format, compress_above: int | None, max_size: int
    ) -> None:
        self.cache = cache
        self.format = format
        self.compress_above = compress_above
        self.max_size = max_size

    def encode(self, value: Any) -> bytes:
        flags = _MSGPACK if self.format == "msgpack" else _JSON
        if isinstance(value, CachedError):
            flags |= _ERROR
            value = [value.type_path, list(value.args)]
        payload = self._dump(value)
        if len(payload) > self.max_size:
            raise SerializationError(
                self.cache, type(value).__name__,
                f"it encodes to {len(payload)} bytes, over max_value_size={self.max_size}",
            )
        if self.compress_above is not None and len(payload) > self.compress_above:
            packed = zlib.compress(payload)
            if len(packed) < len(payload):
                flags |= _ZLIB
                payload = packed
        return MAGIC + bytes((flags,)) + payload

    def decode(self, data: bytes) -> Any:
        if len(data) < len(MAGIC) + 1 or not data.startswith(MAGIC):
            raise CorruptValue("not a value written by a tether cache")
        flags = data[len(MAGIC)]
        if flags & ~_KNOWN:
            raise CorruptValue(f"unknown flags {flags:#04x}")
        body = data[len(MAGIC) + 1:]
        if flags & _ZLIB:
            body = _inflate(body, self.max_size)
        elif len(body) > self.max_size:
            raise CorruptValue(f"value of {len(body)} bytes is over max_value_size")
        try:
            if flags & _MSGPACK:
                value = msgpack.unpackb(body, raw=False, strict_map_key=False,
                                        ext_hook=_refuse_extension)
            else:
                value = json.loads(body)
        except CorruptValue:
            raise
        except Exception as error:  # any parser failure means the bytes are not ours
            raise CorruptValue(f"cannot parse the payload ({type(error).__name__})") from None
        if flags & _ERROR:
            return _error_record(value)
        return value

    def _dump(self, value: Any) -> bytes:
        offender: list[type] = []

        def refuse(obj: Any) -> Any:
            offender.append(type(obj))
            raise TypeError(type(obj).__name__)

        try:
            if self.format == "msgpack":
                packed: bytes = msgpack.packb(value, use_bin_type=True, default=refuse)
                return packed
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                              default=refuse).encode()
        except (TypeError, ValueError, OverflowError) as error:
            kind = offender[0] if offender else type(value)
            reason = f"{self.format} cannot encode it ({error})" if not offender else \
                f"{self.format} cannot encode {_type_name(kind)}"
            raise SerializationError(self.cache, _type_name(kind), reason) from None


def _type_name(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _refuse_extension(code: int, data: bytes) -> Any:
    raise CorruptValue(f"msgpack extension type {code} is not accepted")


def _inflate(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise CorruptValue("the compressed payload is damaged") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise CorruptValue(f"the payload inflates to more than max_value_size={limit} bytes")
    if not inflater.eof:
        raise CorruptValue("the compressed payload is truncated")
    return out


def _error_record(value: Any) -> CachedError:
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str)
            or not isinstance(value[1], list)):
        raise CorruptValue("malformed error record")
    args = value[1]
    if not all(a is None or isinstance(a, str | int | float | bool) for a in args):
        raise CorruptValue("malformed error record")
    return CachedError(value[0], tuple(args))
