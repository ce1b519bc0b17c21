"""Every stage's settings, one pydantic model each: the one place a default and its help live.

No heavy imports here (pydantic only): the command line reads its defaults from these models.
"""
