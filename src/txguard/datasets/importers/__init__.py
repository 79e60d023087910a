"""Importers: public data sets and any CSV -> canonical events (see docs/importers.md).

Each ``import_<name>(src, *, label_delay, skip_invalid, ...)`` returns an
:class:`~txguard.datasets.importers.common.ImportResult` whose ``table`` conforms to
``txguard.io.events.EVENT_SCHEMA`` in replay order (write it with
``write_events(path, result.table, sort=False)``).
"""

from txguard.datasets.importers.common import (
    DEFAULT_LABEL_DELAY,
    ImportRejectedError,
    ImportResult,
    parse_duration,
)
from txguard.datasets.importers.csv import import_csv
from txguard.datasets.importers.handbook import import_handbook
from txguard.datasets.importers.ibm_aml import import_ibm_aml
from txguard.datasets.importers.mapping import CsvMapping, load_mapping
from txguard.datasets.importers.paysim import import_paysim

__all__ = [
    "DEFAULT_LABEL_DELAY",
    "CsvMapping",
    "ImportRejectedError",
    "ImportResult",
    "import_csv",
    "import_handbook",
    "import_ibm_aml",
    "import_paysim",
    "load_mapping",
    "parse_duration",
]
