"""What the server says about itself: `/openapi.json` and `/docs` generated from each system's request schema (the
declared pandera schemas), and `/metrics` in Prometheus' text format. The docs page is plain HTML, with nothing
fetched from elsewhere."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from mlsys_assets.core.server.protocol import INPUT_FORMATS

if TYPE_CHECKING:
    from mlsys_assets.core.server.app import Limits
    from mlsys_assets.core.server.schema import FieldRule, RequestSchema
    from mlsys_assets.core.server.service import SystemService

TYPES = {"integer": "integer", "float": "number", "text": "string", "boolean": "boolean", "timestamp": "string",
         "date": "string"}
BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def field_schema(rule: FieldRule) -> dict[str, Any]:
    """One request field as JSON Schema (OpenAPI 3.1)."""
    schema: dict[str, Any] = {"type": [TYPES[rule.kind], "null"] if rule.nullable else TYPES[rule.kind]}
    if rule.kind in ("timestamp", "date"):
        schema["format"] = "date-time" if rule.kind == "timestamp" else "date"
    for check, bound in rule.checks:
        if check in BOUNDS:
            schema[BOUNDS[check]] = bound if not hasattr(bound, "isoformat") else bound.isoformat()
        elif check == "isin":
            schema["enum"] = sorted(bound, key=str)
        elif check == "pattern":
            schema["pattern"] = bound.pattern
        elif check == "len":
            schema |= {k: v for k, v in (("minLength", bound[0]), ("maxLength", bound[1])) if v is not None}
    if rule.description:
        schema["description"] = rule.description
    return schema


def row_schema(schema: RequestSchema) -> dict[str, Any]:
    properties = {name: field_schema(rule) for name, rule in schema.fields.items()}
    for source, rules in schema.carried.items():
        for name, rule in rules.items():
            properties[name] = field_schema(rule) | {
                "description": f"Optional: the {source} value this row carries (else the published one is used)."}
    rules = [f"{r.name} ({', '.join(r.reads)})" for r in schema.rules]
    return {"type": "object", "properties": properties, "required": list(schema.required),
            "description": "A row of the entity source without its outcome columns. Rules across columns: "
                           + ("; ".join(rules) if rules else "none") + "."}


def request_body(schema: RequestSchema) -> dict[str, Any]:
    row = row_schema(schema)
    formats = {
        "dataframe_records": {"type": "array", "items": row},
        "dataframe_split": {"type": "object", "required": ["columns", "data"], "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}}}},
        "inputs": {"oneOf": [{"type": "array", "items": row}, {"type": "object"},
                             {"type": "array", "items": {"type": "array"},
                              "description": f"rows by position: {', '.join(schema.required)}"}]},
        "instances": {"type": "array", "items": row},
    }
    assert set(formats) == set(INPUT_FORMATS)
    return {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [{"type": "object", "required": [name], "properties": {name: body}}
                                                  for name, body in formats.items()]}},
        "text/csv": {"schema": {"type": "string", "description": "a header line of column names, then rows"}}}}


def prediction_schema(system: Any) -> dict[str, Any]:
    key = system.features.id_column
    values = ({"probability": {"type": "number"}, "label": {"type": "integer", "description": f"1 when the probability "
              f"is at least {system.prediction.threshold}"}} if system.prediction.task == "binary"
              else {"prediction": {"type": "number"}})
    item = {"type": "object", "properties": {**values, key: {"type": "string"}, "model_version": {"type": "string"},
                                             "model_name": {"type": "string"}, "fallback": {"type": "boolean"},
                                             "request_id": {"type": "string"}}}
    return {"type": "object", "properties": {"predictions": {"type": "array", "items": item}}}


def openapi(services: dict[str, SystemService], default: str) -> dict[str, Any]:
    error = {"description": "MLflow's error body", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error_code": {"type": "string"}, "message": {"type": "string"},
                                         "errors": {"type": "array", "items": {"type": "object"}}}}}}}
    paths: dict[str, Any] = {}
    for name, service in services.items():
        operation = {
            "summary": f"Score {service.system.prediction.entity} rows of {name}",
            "description": service.system.description,
            "requestBody": request_body(service.schema),
            "responses": {"200": {"description": "one prediction per row, in order",
                                  "headers": {h: {"schema": {"type": "string"}} for h in
                                              ("X-Model-Name", "X-Model-Version", "X-Model-Alias", "X-Request-Id")},
                                  "content": {"application/json": {"schema": prediction_schema(service.system)}}},
                          **{code: error for code in ("400", "413", "415", "503")}},
        }
        for prefix in ([""] if name == default else []) + [f"/{name}"]:
            paths[f"{prefix}/invocations"] = {"post": operation | {"operationId": f"invoke_{name}{prefix == ''}"}}
            paths[f"{prefix}/health"] = {"get": {"summary": f"{name}: which model answers, and why",
                                                 "responses": {"200": {"description": "status"}}}}
    paths["/ping"] = {"get": {"summary": "200 once every system has loaded", "responses": {
        "200": {"description": "ready"}, "503": error}}}
    return {"openapi": "3.1.0", "info": {"title": "mlsys serve", "version": "1",
                                         "description": f"Systems: {', '.join(services)}; default: {default}."},
            "paths": paths}


def docs_page(services: dict[str, SystemService], default: str) -> str:
    parts = ["<!doctype html><meta charset='utf-8'><title>mlsys serve</title>",
             "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}td,th{padding:2px 8px;"
             "text-align:left;border-bottom:1px solid #ddd}code{background:#f4f4f4}</style>",
             "<h1>mlsys serve</h1><p>MLflow's scoring protocol: <code>POST /&lt;system&gt;/invocations</code> with "
             f"one of {', '.join(INPUT_FORMATS)} (JSON) or a CSV body. The machine-readable description is "
             "<a href='/openapi.json'>/openapi.json</a>.</p>"]
    for name, service in services.items():
        route = "/invocations and /" + name + "/invocations" if name == default else f"/{name}/invocations"
        parts.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(service.system.description)}</p>"
                     f"<p>POST {html.escape(route)}</p><table><tr><th>field</th><th>type</th><th>rules</th></tr>")
        for field, rule in row_schema(service.schema)["properties"].items():
            rules = {k: v for k, v in rule.items() if k not in ("type", "description")}
            required = " (required)" if field in service.schema.required else ""
            parts.append(f"<tr><td><code>{html.escape(field)}</code>{required}</td>"
                         f"<td>{html.escape(str(rule['type']))}</td><td>{html.escape(str(rules))[:300]}</td></tr>")
        parts.append("</table>")
        for rule in service.schema.rules:
            parts.append(f"<p>Rule <code>{html.escape(rule.name)}</code> across {html.escape(', '.join(rule.reads))}"
                         "</p>")
    return "".join(parts)


def metrics_text(services: dict[str, SystemService], limits: Limits) -> str:
    logs = {name: s.log.status() for name, s in services.items()}  # once each: a status may look at the disk
    lines = ["# TYPE mlsys_answered_rows_total counter"]
    for name, s in services.items():
        lines += [f'mlsys_answered_rows_total{{system="{name}",path="row"}} {s.rows.answered_rows}',
                  f'mlsys_answered_rows_total{{system="{name}",path="table"}} {s.table.answered_rows}']
    for metric, value in (("mlsys_row_path_enabled", lambda n, s: int(s.rows.available and
                                                                       s.models.serving().compiled is not None)),
                          ("mlsys_fallback", lambda n, s: int(s.models.serving().is_fallback)),
                          ("mlsys_logging", lambda n, s: int(logs[n]["logging"])),
                          ("mlsys_logged_rows_total", lambda n, s: logs[n]["written"]),
                          ("mlsys_log_dropped_total", lambda n, s: logs[n]["dropped"]),
                          ("mlsys_shadow_rows_total", lambda n, s: s.shadow.scored_rows)):
        lines.append(f"# TYPE {metric} {'counter' if metric.endswith('total') else 'gauge'}")
        lines += [f'{metric}{{system="{name}"}} {value(name, s)}' for name, s in services.items()]
    lines += ["# TYPE mlsys_refused_busy_total counter", f"mlsys_refused_busy_total {limits.refused}",
              "# TYPE mlsys_inflight_bytes gauge", f"mlsys_inflight_bytes {limits.bytes}",
              "# TYPE mlsys_inflight_rows gauge", f"mlsys_inflight_rows {limits.rows}"]
    return "\n".join(lines) + "\n"
