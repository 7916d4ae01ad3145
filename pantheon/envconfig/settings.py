"""The settings base: one typed, frozen object per component, read from variables.

Every field names its environment variable (`variable("PANTHEON_X")`); the
prefix is `PANTHEON_` throughout, with one prefix per component for what is
its own (`PANTHEON_GATEWAY_`, `PANTHEON_KAFKA_`, `PANTHEON_S3_`). A class is
read with `from_env(env)`; building one directly (tests) reads nothing from
the environment. A value that does not parse, or falls outside its bounds,
is a `ConfigError` whose message is one line: the variable, what it expects,
and what it got, e.g.

    PANTHEON_S3_READ_TIMEOUT_S: expected a number of seconds > 0 and at most 604800, got 'abc'

An empty variable is a value like any other: empty where a number is
expected is an error, empty where a name is optional means unset.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Self

import annotated_types
from pydantic import AliasChoices, BeforeValidator, Field, StringConstraints, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PREFIX = "PANTHEON_"
#: The longest duration any setting may hold (a week): far above every
#: sensible deadline, far below what timers overflow on.
MAX_SECONDS = 7 * 24 * 3600
#: The largest count any setting may hold (librdkafka's and gRPC's own bound).
MAX_WHOLE = 2**31 - 1
#: How much of a bad value an error quotes.
QUOTE_CHARS = 40


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe; the message is one line
    that names the variable and what it expects."""


def variable(name: str, *fallbacks: str, default: Any = ..., **field: Any) -> Any:
    """A field read from the variable `name`, else from the first of
    `fallbacks` that is set and not empty; `field` takes pydantic's
    constraints (`gt`, `le`, ...) and `description`, which error messages
    use as what the variable expects."""
    alias: str | AliasChoices = AliasChoices(name, *fallbacks) if fallbacks else name
    return Field(default, validation_alias=alias, **field)


def seconds(name: str, default: float) -> Any:
    """A duration in seconds: a finite number > 0, at most a week."""
    return variable(
        name,
        default=default,
        gt=0,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description=f"a number of seconds > 0 and at most {MAX_SECONDS}",
    )


def whole(name: str, default: int, *, low: int = 1, high: int = MAX_WHOLE) -> Any:
    """A whole number from `low` to `high` (no fractions, no exponents)."""
    return variable(name, default=default, ge=low, le=high)


def variables(field: FieldInfo) -> tuple[str, ...]:
    """The variables a field is read from, in order of preference."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return (alias,)
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    return ()


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _flag(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ValueError("expected 1 (on) or 0 (off)")


def _https(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith("https://"):
        raise ValueError("expected an https:// URL (plaintext is refused)")
    return value


def base64_key(size: int) -> Callable[[Any], Any]:
    """A validator of an optional secret key given as the base64 of `size` bytes."""

    def decode(value: Any) -> Any:
        if value is None or value == "" or isinstance(value, bytes):
            return value or None
        try:
            key = base64.b64decode(str(value), validate=True)
        except ValueError:
            key = b""
        if len(key) != size:
            raise ValueError(f"expected the base64 of {size} random bytes")
        return key

    return decode


#: A value that must not be empty (a file, a host, a credential).
Text = Annotated[str, StringConstraints(min_length=1)]
#: A value that may be left out; empty means left out.
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_none)]
#: A test switch: `1` on, `0` or empty off; anything else is refused.
Flag = Annotated[bool, BeforeValidator(_flag)]
#: An endpoint reached over HTTPS only.
HttpsUrl = Annotated[str, BeforeValidator(_https)]


class _Variables(PydanticBaseSettingsSource):
    """The fields' variables, taken from one mapping (the process environment,
    or a test's dict). Fields without a variable are not read: a composed
    object's parts are given to it."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        names = variables(field)
        for name in names:
            if self._env.get(name):
                return self._env[name], name, False
        # Only empty ones (or none) are set: the preferred one speaks, so an
        # empty value is judged, not silently replaced by the default.
        for name in names:
            if name in self._env:
                return self._env[name], name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                found[key] = value
        return found


class EnvSettings(BaseSettings):
    """A component's settings: frozen, typed, each field naming its variable."""

    model_config = SettingsConfigDict(
        frozen=True, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(describe(type(self), exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Built directly, a settings object holds what it is given and reads
        # nothing else (no environment, no .env file); `from_env` reads.
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """The settings in `env` (the process environment by default)."""
        return cls.load(env)

    @classmethod
    def load(cls, env: Mapping[str, str], **given: Any) -> Self:
        """The settings in `env`, with `given` fields (composed parts) as they are."""
        sources = (InitSettingsSource(cls, given), _Variables(cls, env))
        return cls(_build_sources=(sources, given))


def describe(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line naming the first bad variable, what it expects and what it got."""
    errors = exc.errors(include_url=False)
    first = _describe_one(cls, errors[0])
    if len(errors) > 1:
        first += f" (and {len(errors) - 1} more)"
    return " ".join(first.split())


def _describe_one(cls: type[BaseSettings], error: Any) -> str:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return str(cause)
    key = str(error["loc"][0]) if error["loc"] else ""
    field = next(
        (f for name, f in cls.model_fields.items() if key == name or key in variables(f)),
        None,
    )
    names = variables(field) if field else ()
    shown = key if key.startswith(PREFIX) or not names else names[0]
    if error["type"] == "missing":
        return f"{' or '.join(names) or shown} is not set"
    if isinstance(cause, ValueError) and not (field and field.description):
        return f"{shown}: {cause}{_got(field, error['input'])}"
    return f"{shown}: expected {expects_of(field) if field else error['msg']}{_got(field, error['input'])}"


def _got(field: FieldInfo | None, value: Any) -> str:
    if field is not None and field.repr is False:
        return ""  # a secret: never echoed
    quoted = repr(value)
    if len(quoted) > QUOTE_CHARS:
        quoted = f"{quoted[:QUOTE_CHARS]}... ({len(str(value))} characters)"
    return f", got {quoted}"


def expects_of(field: FieldInfo) -> str:
    """What a field's variable must hold, in words."""
    if field.description:
        return field.description
    bounds = {type(m): m for m in field.metadata}
    kind = "a whole number" if field.annotation is int else "a number"
    if field.annotation not in (int, float):
        return "a non-empty value" if field.is_required() else "a valid value"
    gt, ge, le = (bounds.get(b) for b in (annotated_types.Gt, annotated_types.Ge, annotated_types.Le))
    text = kind
    if isinstance(gt, annotated_types.Gt):
        text += f" > {gt.gt}"
    elif isinstance(ge, annotated_types.Ge):
        text += f" from {ge.ge}"
    if isinstance(le, annotated_types.Le):
        text += f" to {le.le}" if isinstance(ge, annotated_types.Ge) else f" and at most {le.le}"
    return text
