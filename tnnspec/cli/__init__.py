"""Command-line interface: ``tnnspec validate|schema|summary|render ...``."""
