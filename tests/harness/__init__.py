"""What the template's tests share, one job per module.

- ``project``: render the template once per answer set, copy it per test, and
  work in the copy as a user does (CLI subprocesses, or Alembic in-process).
- ``database``: what a user could check in a database; the password that must
  never show.
- ``postgres``: a throwaway PostgreSQL server, started by the suite.
- ``start_together``: start several commands at the same moment, so they race.
- ``venv``: fresh virtual environments with uv.
"""

from pathlib import Path

#: The template repository's root (copier.yml, template/, README.md).
ROOT = Path(__file__).resolve().parents[2]
