"""Streamlit entry point: ``streamlit run app.py [-- --db PATH --goals DIR]``.

The database is ``--db``, else ``$HARNESS_DB``, else ``.harness/harness.duckdb``.
"""
import sys

from harness.app.main import main

main(sys.argv[1:])
