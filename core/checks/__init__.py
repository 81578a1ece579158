"""The workspace check: every slide reads, every model loads and runs, every patient's visits fit each sequence model."""
