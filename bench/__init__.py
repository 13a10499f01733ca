"""The benchmark: ``python -m bench`` (see ``bench/RESULTS.md`` for the latest numbers).

Layout: ``core.py`` is what a system plugs in (a ``Target``: one system on one store);
``systems/`` holds one module per system; ``measures.py`` runs each measurement the same way
for every target; ``procs.py`` drives worker processes; ``runner.py`` repeats, interleaves and
summarises; ``report.py`` prints the table and writes RESULTS.md and the raw JSON.
"""
