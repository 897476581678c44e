"""personalign.audit: what one aggregated reward hides (heterogeneity, social choice, groups, who loses)."""

from personalign.audit.pipeline import run_audit
from personalign.audit.report import write_audit

__all__ = ["run_audit", "write_audit"]
