"""Cohort import from CSV files and slide folders, with one error line per bad row or file."""
