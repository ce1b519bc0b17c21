"""Render the report page from its data with the packaged jinja2 template (autoescaped: every
prompt and name a user typed is text, never markup)."""

from __future__ import annotations

from typing import Any

TEMPLATE = "report.html.j2"


def render_page(context: dict[str, Any]) -> str:
    import jinja2

    from videodirector_cli.report.plot import line_plot

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("videodirector_cli.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["line_plot"] = line_plot
    return environment.get_template(TEMPLATE).render(**context)
