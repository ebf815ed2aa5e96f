"""Getting a run out of its run file: exports (JSONL, CSV, Parquet, Markdown) with a manifest,
owners' objections honoured, signature verification of exports, and the HTML report.

Heavy dependencies (pyarrow, matplotlib) are imported only by the modules that need them.
"""

from moltsim.export.exporter import export_run
from moltsim.export.options import ExportError, ExportOptions
from moltsim.export.verify import Verification, verify_export

__all__ = ["ExportError", "ExportOptions", "Verification", "export_run", "verify_export"]
