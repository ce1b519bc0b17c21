"""Attention control: processor classes swapped in by module name, told the step by a controller."""
