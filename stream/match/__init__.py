"""Matching: Kusto string operators and compiled rule predicates."""
