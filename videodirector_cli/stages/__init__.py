"""One module per subcommand: project bookkeeping and file layout around the media and model code.

Each stage is a plain function taking an ``Output`` and returning the result dict that the
command prints, so tests call stages directly and the CLI stays a thin parser.
"""
