"""vdir: edit real videos with a text prompt, the VideoDirector way, on AnimateDiff."""

__version__ = "0.1.0"
