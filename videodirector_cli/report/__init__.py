"""The HTML report: a page built from plain data (what the report stage collected) with a
jinja2 template; nothing here reads a project or runs a model."""
