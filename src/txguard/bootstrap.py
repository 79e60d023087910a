"""The one place that wires ports to adapters from Settings (filled by the scoring service)."""
