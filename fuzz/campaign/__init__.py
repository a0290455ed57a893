"""Overnight campaigns: worker processes, findings, statistics and reports."""
