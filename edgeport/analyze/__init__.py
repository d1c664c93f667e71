"""`edgeport analyze`: offline detection over videos, image folders and image lists, in-process or on Ray.

One JSON-lines file per source and a summary.json; see docs/cluster.md.
"""

from edgeport.analyze.run import AnalyzeOptions, analyze
from edgeport.analyze.sources import Source, SourceError, open_source

__all__ = ["AnalyzeOptions", "Source", "SourceError", "analyze", "open_source"]
