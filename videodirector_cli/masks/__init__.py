"""Per-frame masks of the object to edit: SAM2 tracking, imported masks, boxes, the ellipse trick."""
