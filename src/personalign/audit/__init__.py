"""personalign.audit: what one aggregated reward hides (heterogeneity, social choice, groups, who loses)."""

from personalign.audit.report import run_audit, write_audit

__all__ = ["run_audit", "write_audit"]
