"""Strategy plugins shipped with trading-engine."""
