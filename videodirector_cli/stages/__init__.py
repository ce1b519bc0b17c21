"""One module per subcommand: project bookkeeping and file layout around the media and model code.

Every stage is ``run_<stage>(project, request, output) -> StageOutcome`` (init and demo, which
make their project, take its folder instead): ``request.check()`` first, so a bad request stops
before anything is written; the command prints the outcome. Tests call stages directly and the
CLI stays a thin parser. Shared orchestration lives in common.py, outcome.py and
inversion_files.py; stage modules never import each other (demo.py, the pipeline, aside).
"""
