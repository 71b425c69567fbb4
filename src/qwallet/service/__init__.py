"""Use cases of the operator side: partners, players, sessions, adjustments, reconciliation."""
