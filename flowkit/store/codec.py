"""Results as JSON: canonical ``dumps``, item keys for resume, and a node's ``ResultCodec``."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter
from pydantic_core import from_json

from flowkit.errors import StoreError
from flowkit.store.blobs import LARGE


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.hex()
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_encode_str = json.encoder.encode_basestring_ascii
_CANONICAL = json.JSONEncoder(default=_default, sort_keys=True, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Canonical JSON for a value (pydantic models, dataclasses and arrays included)."""
    return _CANONICAL.encode(value)


def item_key(item: Any, params: dict[str, Any] | None = None) -> str:
    """A stable key for an item's content (and the params its node ran with).

    An int of fewer than 32 characters is its own key (its decimal text, so it cannot meet a
    hashed key); any other content is hashed to 32 hex characters.
    """
    if params:
        text = dumps([item, params])
    elif type(item) is int:
        text = str(item)
        if len(text) < 32:
            return text
    elif type(item) is str:
        text = _encode_str(item)
    else:
        text = dumps(item)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_MISSING = object()


_ROW_CONFIG = ConfigDict(ser_json_inf_nan="constants", ser_json_bytes="hex")
_READ_CONFIG = ConfigDict(val_json_bytes="hex")


def _reader(annotation: Any) -> TypeAdapter[Any]:
    """What validates a stored value as ``annotation``: bytes are read back from their hex
    (a model or dataclass keeps its own config, as when it was written)."""
    try:
        return TypeAdapter(annotation, config=_READ_CONFIG)
    except PydanticUserError:
        return TypeAdapter(annotation)


class ResultCodec:
    """Turns exec results into JSON and back, typed by exec's return annotation.

    With an annotation (a pydantic model, ``list[int]``, ``tuple[str, float]``...) a resumed
    result comes back as the same type; without one it comes back as plain JSON data.
    NaN and infinities are kept; bytes are stored as hex.
    """

    def __init__(self, node_name: str, annotation: Any = _MISSING) -> None:
        self.node_name = node_name
        self.adapter: TypeAdapter[Any] | None = None
        self._annotation: Any = Any
        self._rows: TypeAdapter[Any] | None = None
        if annotation is not _MISSING and annotation is not Any:
            try:
                self.adapter = _reader(annotation)
                self._annotation = annotation
            except Exception:  # an annotation pydantic cannot validate: store plain JSON
                self.adapter = None

    @classmethod
    def for_method(cls, node_name: str, method: Any) -> ResultCodec:
        try:
            hints = typing.get_type_hints(method)
        except Exception:
            hints = {}
        return cls(node_name, hints.get("return", _MISSING))

    def encode_rows(self, rows: list[tuple[str, int, Any]]) -> tuple[bytes, StoreError | None]:
        """``[[item_key, item_index, value], ...]`` as JSON for a group of results.

        One encoder call for the whole group. If some value cannot be encoded, the others are
        still returned, with the error for the first that could not.
        """
        if self._rows is None:
            self._rows = _rows_adapter(self._annotation)
        try:
            return _dump(self._rows, rows), None
        except Exception:  # find the values that do not fit, keep the rest
            parts, error = [], None
            for row in rows:
                try:
                    parts.append(self._encode_row(row))
                except StoreError as exc:
                    error = error or exc
            return f"[{','.join(parts)}]".encode(), error

    def encode_groups(
        self, rows: list[tuple[str, int, Any]]
    ) -> tuple[list[bytes], list[Large], StoreError | None]:
        """``encode_rows`` for the writer: groups of at most about ``GROUP_BYTES`` each, and
        the large results apart, as ``(item_key, item_index, text or JSON)``.

        A large result is stored as a file of its own (``flowkit.store.blobs``): text of
        ``LARGE`` characters or more is kept as it is, never encoded as JSON;
        other rows are encoded together, and one by one only when their group turns out
        larger than ``GROUP_BYTES``, when those whose JSON reaches ``LARGE`` go apart too.
        """
        large: list[Large] = []
        alone: list[tuple[str, int, Any]] = []
        rest = rows
        if any(_large(r[2]) for r in rows):
            rest = []
            for row in rows:
                value = row[2]
                if type(value) is str and len(value) >= LARGE:
                    large.append(row)
                elif _large(value):
                    alone.append(row)
                else:
                    rest.append(row)
        groups: list[bytes] = []
        error: StoreError | None = None
        if rest:
            text, error = self.encode_rows(rest)
            if len(text) <= GROUP_BYTES and (len(rest) > 1 or len(text) < LARGE):
                groups.append(text)
            else:  # large rows found only once encoded: encode them one by one
                alone = rest + alone
        texts = []
        for row in alone:
            one, err = self.encode_rows([row])
            error = error or err
            if len(one) >= LARGE:
                large.append((row[0], row[1], self._value_of(row, one)))
            elif one != b"[]":
                texts.append(one)
        groups.extend(_regroup(texts))
        return [text for text in groups if text != b"[]"], large, error

    def _value_of(self, row: tuple[str, int, Any], text: bytes) -> bytes:
        """The value's JSON in ``text``, the encoded ``[row]``."""
        assert self._rows is not None
        head = _dump(self._rows, [(row[0], row[1], None)])
        return text[len(head) - len(b"null]]") : -2]

    def _encode_row(self, row: tuple[str, int, Any]) -> str:
        assert self._rows is not None
        for adapter in (self._rows, _plain_rows()):  # a value of another type: plain JSON
            try:
                return _dump(adapter, [row])[1:-1].decode()
            except Exception as exc:
                error = exc
        value = row[2]
        raise StoreError(
            f"{self.node_name}: exec returned {type(value).__name__} for item {row[1]}, which "
            f"cannot be checkpointed as JSON ({error}). Return JSON-friendly data or a pydantic "
            "model, or set checkpoint = False on the node"
        )

    def decode(self, text: str, raw: bool = False) -> Any:
        """The stored value (``text`` is JSON, or the value itself if ``raw``); ``ValueError``
        if it no longer fits exec's annotation.

        Parsed with pydantic-core, which shares the text of short strings (dict keys, say)
        between results, so a million resumed results take the memory of a million fresh
        ones, not twice it."""
        if self.adapter is None:
            return text if raw else from_json(text, cache_strings=True)
        return self.adapter.validate_python(text) if raw else self.adapter.validate_json(text)


GROUP_BYTES = 1 << 20
"""A group of rows larger than this goes to the writer in smaller groups."""
Large = tuple[str, int, str | bytes]
"""A large result as the store keeps it apart: item key, item index, and the text result
itself or the result's JSON."""


def _large(value: Any) -> bool:
    """Text of ``LARGE`` characters or more, or bytes whose hex text is that long."""
    if isinstance(value, str):
        return len(value) >= LARGE
    return isinstance(value, bytes) and 2 * len(value) >= LARGE


def _regroup(texts: list[bytes]) -> list[bytes]:
    """Single-row JSON arrays joined back into arrays of at most about ``GROUP_BYTES``."""
    out: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for text in texts:
        if parts and size + len(text) > GROUP_BYTES:
            out.append(b"[" + b",".join(parts) + b"]")
            parts, size = [], 0
        parts.append(text[1:-1])
        size += len(text)
    if parts:
        out.append(b"[" + b",".join(parts) + b"]")
    return out


def _rows_adapter(annotation: Any) -> TypeAdapter[Any]:
    if annotation is Any:
        return _plain_rows()
    try:
        row = tuple.__class_getitem__((str, int, annotation))
        return TypeAdapter(list[row], config=_ROW_CONFIG)  # type: ignore[valid-type]
    except Exception:
        return _plain_rows()


@functools.cache
def _plain_rows() -> TypeAdapter[Any]:
    return TypeAdapter(list[tuple[str, int, Any]], config=_ROW_CONFIG)


def _dump(adapter: TypeAdapter[Any], rows: list[tuple[str, int, Any]]) -> bytes:
    return adapter.dump_json(rows, warnings=False, fallback=_default)
