"""Performance monitoring: statement statistics, slow queries, index and disk usage.

See docs/caching.md ("Monitoring"). ``db.performance_report()`` returns a
:class:`PerformanceReport`; ``db.monitor`` is the :class:`Monitor` timing every
statement.
"""

from mangostore.monitor.disk import DiskUsage, ObjectUsage
from mangostore.monitor.normalize import normalize
from mangostore.monitor.plans import IndexInfo, IndexUsage, TableScan
from mangostore.monitor.report import (
    CachePerformance,
    PerformanceReport,
    QueryPerformance,
    Recommendation,
    TierPerformance,
)
from mangostore.monitor.stats import Monitor, SlowQuery, StatementStats

__all__ = [
    "CachePerformance",
    "DiskUsage",
    "IndexInfo",
    "IndexUsage",
    "Monitor",
    "ObjectUsage",
    "PerformanceReport",
    "QueryPerformance",
    "Recommendation",
    "SlowQuery",
    "StatementStats",
    "TableScan",
    "TierPerformance",
    "normalize",
]
