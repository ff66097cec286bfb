"""The dataset contract: which columns are features, which is the label, the row key and the time."""

from __future__ import annotations

import re
import reprlib
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops_core.errors import BadNameError, SpecError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class FeatureType(StrEnum):
    """How a feature is treated: numeric or categorical."""

    numeric = "numeric"
    categorical = "categorical"


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a safe dataset name, else raise ``BadNameError`` saying why."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BadNameError(
            f"dataset name {name!r} is not allowed",
            hint="use 1-64 letters, digits, '_' or '-', starting with a letter or digit; "
            "no '/', '..' or spaces",
        )
    return name


class DatasetSpec(BaseModel):
    """A dataset's columns and their roles, as written in ``datasets/<name>.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    target: str | None = Field(
        default=None, description="Label column; may be absent from batches."
    )
    id: str | None = Field(default=None, description="Row key joining delayed labels and feedback.")
    timestamp: str | None = Field(default=None, description="Event-time column.")
    features: dict[str, FeatureType]

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(
                "use 1-64 letters, digits, '_' or '-', starting with a letter or digit "
                "(no '/', '..' or spaces)"
            )
        return value

    @field_validator("features")
    @classmethod
    def _some_features(cls, value: dict[str, FeatureType]) -> dict[str, FeatureType]:
        if not value:
            raise ValueError("list at least one feature, e.g. `income: numeric`")
        for column in value:
            if not str(column).strip():
                raise ValueError("a feature name is empty")
        return value

    @model_validator(mode="after")
    def _roles_distinct(self) -> DatasetSpec:
        roles = {"target": self.target, "id": self.id, "timestamp": self.timestamp}
        for role, column in roles.items():
            if column is not None and column in self.features:
                raise ValueError(
                    f"{role}: column {column!r} is also listed under features; "
                    f"a {role} column must not be a feature"
                )
        named = [c for c in roles.values() if c is not None]
        duplicates = sorted({c for c in named if named.count(c) > 1})
        if duplicates:
            raise ValueError(f"column {duplicates[0]!r} is given more than one role")
        return self

    @property
    def numeric(self) -> list[str]:
        """The numeric features, in spec order."""
        return [c for c, t in self.features.items() if t is FeatureType.numeric]

    @property
    def categorical(self) -> list[str]:
        """The categorical features, in spec order."""
        return [c for c, t in self.features.items() if t is FeatureType.categorical]

    @property
    def required_columns(self) -> list[str]:
        """Columns every batch must carry (the label may come later, so it is not required)."""
        extra = [c for c in (self.id, self.timestamp) if c is not None]
        return [*self.features, *extra]

    @property
    def known_columns(self) -> list[str]:
        """Every column the spec names: the required ones, then the label if there is one."""
        return [*self.required_columns, *([self.target] if self.target else [])]

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetSpec:
        """Read and validate a spec file; a ``SpecError`` names the file and the field at fault."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"spec {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"spec {path}: cannot be read ({exc})") from None
        try:
            raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise SpecError(f"spec {path}: not valid YAML ({_one_line(exc)})") from None
        except RecursionError:
            raise SpecError(
                f"spec {path}: nested too deeply to be a dataset spec",
                hint="a spec is a flat mapping of name, target, id, timestamp and features",
            ) from None
        return cls.from_mapping(raw, source=str(path))

    @classmethod
    def from_mapping(cls, raw: Any, *, source: str = "<spec>") -> DatasetSpec:
        """The spec in ``raw`` (parsed YAML), validated; a ``SpecError`` names ``source`` and the fault."""
        if not isinstance(raw, dict):
            raise SpecError(f"spec {source}: expected a mapping with name, target and features")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise SpecError(f"spec {source}: {_describe(exc)}") from None

    def to_yaml(self) -> str:
        """The spec as YAML that ``from_yaml`` reads back (unset roles left out)."""
        data: dict[str, Any] = {"name": self.name}
        for role in ("target", "id", "timestamp"):
            if getattr(self, role) is not None:
                data[role] = getattr(self, role)
        data["features"] = {c: t.value for c, t in self.features.items()}
        return yaml.safe_dump(data, sort_keys=False)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            hash(key)
        except TypeError:
            # A list or mapping as a key ("? [a, b]"): YAML allows it, a spec never has it.
            raise yaml.constructor.ConstructorError(
                None, None, f"a {type(key).__name__} cannot be a key", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


# What a message quotes of a user's value: short, and never the whole of a huge or deep one.
_quote = reprlib.Repr()
_quote.maxstring = _quote.maxother = 60
_quote.maxlevel = 2


def _short(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:57]}..."


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _describe(exc: ValidationError) -> str:
    """Turn pydantic's errors into 'field: problem' phrases a person can act on."""
    parts = []
    for error in exc.errors():
        where = ".".join(
            _quote.repr(p) if not isinstance(p, str) else _short(p) for p in error["loc"]
        )
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "enum":
            given = _quote.repr(error.get("input"))
            message = f"unknown feature type {given} (use 'numeric' or 'categorical')"
        elif error["type"] == "extra_forbidden":
            message = "unknown field (allowed: name, target, id, timestamp, features)"
        elif error["type"] == "missing":
            message = "required field is missing"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
