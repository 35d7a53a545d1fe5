"""The benchmarks (bench/README.md): scripts (ingest, query, hostile, redaction) over shared modules.

Load generation (``traces``), drivers per protocol (``drivers``), the collector process (``daemon``), one
measured run (``measure``), a large database made fast (``prefill``), figures and report (``report``) and the
database's storage figures (``storage``). Each script is run by its path and puts the repository on
``sys.path`` first, so that ``bench.*`` and ``collector`` import from this checkout.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
