"""The API documentation page at ``/docs``, rendered on the server from the app's OpenAPI schema.

FastAPI's own pages (Swagger UI, ReDoc) load their scripts from a CDN; this server works offline,
so it serves the schema at ``/openapi.json`` and this plain HTML page made from it: every
endpoint with its options, request body types, answers and schemas.
"""

import html
import json


def _type(schema):
    if not isinstance(schema, dict):
        return ""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{html.escape(name)}">{html.escape(name)}</a>'
    if "enum" in schema:
        return " | ".join(html.escape(json.dumps(v)) for v in schema["enum"])
    if "const" in schema:
        return html.escape(json.dumps(schema["const"]))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    kind = schema.get("type", "")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    bounds = [f"{word} {schema[key]}" for key, word in (("minimum", "≥"), ("maximum", "≤")) if key in schema]
    return html.escape(" ".join([kind or "any"] + bounds) + (f", default {json.dumps(schema['default'])}"
                                                             if "default" in schema else ""))


def _properties(schema):
    required = set(schema.get("required", ()))
    rows = "".join(f"<tr><td><code>{html.escape(name)}</code>{' *' if name in required else ''}</td>"
                   f"<td>{_type(prop)}</td><td>{html.escape(prop.get('description', ''))}</td></tr>"
                   for name, prop in schema.get("properties", {}).items())
    return f"<table><tr><th>name</th><th>type</th><th>meaning</th></tr>{rows}</table>" if rows else ""


def render(spec):
    """HTML of the whole API from an OpenAPI dict."""
    info = spec.get("info", {})
    out = [f"<h1>{html.escape(info.get('title', 'API'))} {html.escape(info.get('version', ''))}</h1>",
           f"<p>{html.escape(info.get('description', ''))}</p>",
           '<p>The machine-readable schema: <a href="/openapi.json">/openapi.json</a>. Back to '
           '<a href="/">the page</a>.</p>']
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            out.append(f'<section class="endpoint"><h2><code>{method.upper()} {html.escape(path)}</code> '
                       f"{html.escape(op.get('summary', ''))}</h2><p>{html.escape(op.get('description', ''))}</p>")
            params = op.get("parameters", [])
            if params:
                rows = "".join(f"<tr><td><code>{html.escape(p['name'])}</code> ({p.get('in')})</td>"
                               f"<td>{_type(p.get('schema', {}))}</td>"
                               f"<td>{html.escape(p.get('description', p.get('schema', {}).get('description', '')))}"
                               f"</td></tr>" for p in params)
                out.append(f"<h3>Options</h3><table><tr><th>name</th><th>type</th><th>meaning</th></tr>{rows}</table>")
            body = op.get("requestBody", {}).get("content", {})
            for kind, content in body.items():
                schema = content.get("schema", {})
                out.append(f"<h3>Body: <code>{html.escape(kind)}</code></h3>"
                           + (_properties(schema) or f"<p>{_type(schema)}</p>"))
            rows = "".join(f"<tr><td>{code}</td><td>{html.escape(r.get('description', ''))}</td><td>"
                           f"{_type(r.get('content', {}).get('application/json', {}).get('schema', {}))}</td></tr>"
                           for code, r in op.get("responses", {}).items())
            out.append(f"<h3>Answers</h3><table><tr><th>status</th><th>meaning</th><th>body</th></tr>{rows}</table>"
                       "</section>")
    out.append("<h2>Schemas</h2>")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        out.append(f'<section id="schema-{html.escape(name)}"><h3>{html.escape(name)}</h3>'
                   f"<p>{html.escape(schema.get('description', ''))}</p>{_properties(schema)}</section>")
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            '<title>API documentation</title><link rel="stylesheet" href="/static/app.css"></head>'
            f'<body class="docs"><main>{"".join(out)}</main></body></html>')
