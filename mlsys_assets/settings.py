"""Where every setting comes from: a field default, overridden by an `MLSYS_*` environment variable.

Resources subclass `EnvResource`; `from_env()` builds one from the environment, and Dagster's run
config can override any field again in the launchpad. `mlsys settings` prints the whole table.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any, ClassVar, Self

from dagster import ConfigurableResource

from mlsys_assets.systems import DECLARED

HOME_ENV = "MLSYS_HOME"
DEFAULT_HOME = ".mlsys"


def mlsys_home() -> Path:
    """The one folder that holds all state; `.mlsys/` under the working directory by default."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().absolute()


def home_path(env: str, *parts: str) -> str:
    """A path under MLSYS_HOME unless its own variable points elsewhere."""
    value = os.environ.get(env)
    return str(Path(value).expanduser().absolute() if value else mlsys_home().joinpath(*parts))


def dagster_home() -> Path:
    """DAGSTER_HOME if set, else `MLSYS_HOME/dagster`."""
    return Path(home_path("DAGSTER_HOME", "dagster"))


def env_name(field: str) -> str:
    return f"MLSYS_{field.upper()}"


def _parse(raw: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _parse(raw, args[0]) if raw else None
    if annotation is bool:
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    if origin is list:
        (item,) = typing.get_args(annotation)
        return [_parse(part.strip(), item) for part in raw.split(",") if part.strip()]
    if annotation in (int, float, str):
        return annotation(raw)
    raise TypeError(f"cannot read {annotation} from the environment")


class EnvResource(ConfigurableResource):
    """A resource whose fields can each be set by an environment variable.

    A field `x` is read from `MLSYS_X`; a path field listed in `home_paths` is read from its own
    variable and otherwise defaults to a path under MLSYS_HOME.
    """

    home_paths: ClassVar[dict[str, tuple[str, str]]] = {}

    @classmethod
    def env_fields(cls) -> dict[str, Any]:
        """The fields an environment variable can set (a dict-valued field is run config only)."""
        return {name: field for name, field in cls.model_fields.items()
                if typing.get_origin(field.annotation) is not dict and field.annotation is not dict}

    @classmethod
    def env_var(cls, field: str) -> str:
        return cls.home_paths[field][0] if field in cls.home_paths else env_name(field)

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        values: dict[str, Any] = {}
        for name, field in cls.env_fields().items():
            if name in cls.home_paths:
                env, relative = cls.home_paths[name]
                values[name] = home_path(env, relative)
                continue
            raw = os.environ.get(env_name(name))
            if raw is not None:
                try:
                    values[name] = _parse(raw, field.annotation)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{env_name(name)}={raw!r}: {exc}") from exc
        values.update(overrides)
        return cls(**values)

    @classmethod
    def settings_table(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, meaning) for every field: the README table and `mlsys settings`."""
        rows = []
        for name, field in cls.env_fields().items():
            if name in cls.home_paths:
                default = f"$MLSYS_HOME/{cls.home_paths[name][1]}"
            else:
                default = ",".join(map(str, field.default)) if isinstance(field.default, list) else field.default
            rows.append((cls.env_var(name), str(default), field.description or ""))
        return rows


GLOBAL_SETTINGS: tuple[tuple[str, str, str], ...] = (
    (HOME_ENV, DEFAULT_HOME, "The folder holding all state; deleting it is a clean reset."),
    ("MLSYS_SYSTEMS", ",".join(DECLARED),
     "The declarations the code location serves: `package.module:name` (Python) or a `defs.yaml` path (the "
     "Dagster component), comma-separated."),
    ("DAGSTER_HOME", "$MLSYS_HOME/dagster", "The Dagster instance (runs, event log, schedules; SQLite, or only its "
                                            "`dagster.yaml` and logs with the `postgres` profile)."),
    ("MLSYS_DEMO_START", "2013-03-20", "First day `make demo` replays."),
    ("MLSYS_DEMO_END", "2013-06-05", "Last day `make demo` replays."),
    ("MLSYS_UI_PORT", "3000", "Port of `make dev` (the Dagster UI, on 127.0.0.1)."),
    ("MLSYS_REPORTS_DIR", "$MLSYS_HOME/reports", "Where `monitoring_report` writes its HTML pages."),
    ("MLSYS_ALERTS_DIR", "$MLSYS_HOME/alerts", "JSON lines of every alert (failed runs, failed checks), read by "
                                               "the `alerts` asset."),
)


def settings_rows() -> list[tuple[str, str, str]]:
    """Every setting: (environment variable, default, meaning); the README's table is this list."""
    from mlsys_assets.core.serving import SERVE_SETTINGS
    from mlsys_assets.deployment import DEPLOYMENT_SETTINGS
    from mlsys_assets.resources import ALL_RESOURCES
    from mlsys_assets.systems import declared_systems

    rows = [*GLOBAL_SETTINGS[:2], *DEPLOYMENT_SETTINGS, *GLOBAL_SETTINGS[2:]]
    for resource in ALL_RESOURCES:
        rows.extend(resource.settings_table())
    for system in declared_systems(apply_env=False):  # each system's tunable numbers, defaults as declared
        rows.extend(system.settings_rows())
    return rows + list(SERVE_SETTINGS)
