"""The declared systems. Each folder holds one declaration and the code it references; the engine names none.

A new system is a folder beside `flights/` and one line in `DECLARED`; or, without touching the package,
`MLSYS_SYSTEMS=package.module:name,path/to/defs.yaml,...` names the declarations the code location serves instead
(Python declarations, or YAML ones read by the `mlsys_assets.component.MlsysSystem` Dagster component).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlsys_assets.declaration import System

# "package.module:attribute" of each declaration the code location serves
DECLARED: tuple[str, ...] = ("mlsys_assets.systems.flights.declaration:flights",
                             "mlsys_assets.systems.traffic.declaration:traffic")


SYSTEMS_ENV = "MLSYS_SYSTEMS"


def declared_paths() -> list[str]:
    """The dotted paths of the declarations served: MLSYS_SYSTEMS when set, else `DECLARED`."""
    import os

    raw = os.environ.get(SYSTEMS_ENV, "")
    return [part.strip() for part in raw.split(",") if part.strip()] or list(DECLARED)


def declared_systems(apply_env: bool = True) -> list[System]:
    """Every declared system, with its `MLSYS_<SYSTEM>_<FIELD>` settings from the environment applied (or, for
    printing the defaults, as declared)."""
    from mlsys_assets.declaration import DeclarationError, Ref, System

    systems = []
    for path in declared_paths():
        if path.endswith((".yaml", ".yml")):
            from mlsys_assets.component import system_from_yaml

            declared = system_from_yaml(path)
            systems.append(declared.with_env() if apply_env else declared)
            continue
        ref = Ref(path)
        problem = ref.problem()
        if problem:
            raise DeclarationError(f"{SYSTEMS_ENV}: {problem}")
        system = ref.resolve()
        if not isinstance(system, System):
            raise DeclarationError(f"{SYSTEMS_ENV}: {path!r} is a {type(system).__name__}, not a System")
        systems.append(system.with_env() if apply_env else system)
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise DeclarationError(f"{SYSTEMS_ENV}: two declarations share a name ({', '.join(names)})")
    return systems


def system_named(name: str | None) -> System:
    """A declared system by name, the first declared one for None (settings from the environment applied); the
    error lists the declared ones."""
    systems = {system.name: system for system in declared_systems()}
    if name is None:
        return next(iter(systems.values()))
    if name not in systems:
        raise KeyError(f"no declared system {name!r} (declared: {', '.join(systems)})")
    return systems[name]
