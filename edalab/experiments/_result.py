"""What result objects of several experiments share (notebooks 06 onwards)."""

from __future__ import annotations

from edalab._errors import ConfigError

__all__ = ["MethodRows"]


class MethodRows:
    """For a result whose ``summary`` table has one row per ``method`` column value."""

    summary: object

    def row(self, method: str) -> dict:
        """One method's summary row as a dict (counts stay whole numbers)."""
        rows = self.summary[self.summary["method"] == method]
        if not len(rows):
            raise ConfigError(f"No method {method!r} in this result; it has {list(self.summary['method'])}.")
        return rows.iloc[0].to_dict()
