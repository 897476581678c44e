"""personalign.audit: what one aggregated reward hides (heterogeneity, social choice, groups, who loses)."""

from personalign.audit.report import run_audit, summary_table, write_audit

__all__ = ["run_audit", "summary_table", "write_audit"]
