"""Render the report page from its data with the packaged jinja2 template (autoescaped: every
prompt and name a user typed is text, never markup)."""

from __future__ import annotations

from typing import Any

TEMPLATE = "report.html.j2"
INDEX_TEMPLATE = "batch_index.html.j2"


def _environment():
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
    return environment


def render_page(context: dict[str, Any]) -> str:
    return _environment().get_template(TEMPLATE).render(**context)


def render_index(context: dict[str, Any]) -> str:
    """`vdir batch`'s index page: one row per clip, linking its report."""
    return _environment().get_template(INDEX_TEMPLATE).render(**context)
