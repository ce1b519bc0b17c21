"""`vdir demo`'s request: the generated clip, its two edits, and a short inversion."""

from __future__ import annotations

from pydantic import Field

from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import Settings, in_range
from videodirector_cli.settings.invert import MAX_INNER_STEPS, MAX_STEPS
from videodirector_cli.settings.model import device_field

DEMO_SEED = 1_000_007
"""A held-out seed (>= toy.world.HELDOUT_SEED_START): the model never saw this clip."""


class DemoRequest(Settings):
    """A combination whose colour and shape edits the shipped toy model both gets right
    (docs/cli.md)."""

    colour: str = "red"
    shape: str = "circle"
    direction: str = "down"
    background: str = "green"
    new_colour: str = "white"
    new_shape: str = "square"
    steps: int = Field(15, description="DDIM steps (the paper uses 50; 15 keeps the demo short).")
    inner_steps: int = Field(
        3, description="Null-text optimisation updates per step (the paper: 10)."
    )
    model: str = "toy"
    device: str = device_field()
    seed: int = Field(DEMO_SEED, description="The toy world's seed for the generated clip.")

    def check(self) -> None:
        from videodirector_cli.toy import world

        for value, options, what in (
            (self.colour, world.COLOURS, "colour"),
            (self.new_colour, world.COLOURS, "colour"),
            (self.shape, world.SHAPES, "shape"),
            (self.new_shape, world.SHAPES, "shape"),
            (self.direction, world.DIRECTIONS, "direction"),
            (self.background, world.BACKGROUNDS, "background"),
        ):
            if value not in options:
                raise UsageError(f"unknown {what} {value!r}; choose from {', '.join(options)}")
        if self.new_colour == self.colour or self.new_shape == self.shape:
            raise UsageError("the edits must change the colour and the shape")
        if self.steps < 2 or self.inner_steps < 0:
            raise UsageError("--steps must be at least 2 and --inner-steps at least 0")
        in_range("--steps", self.steps, 2, MAX_STEPS)
        in_range("--inner-steps", self.inner_steps, 0, MAX_INNER_STEPS)
