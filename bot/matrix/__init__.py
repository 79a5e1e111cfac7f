"""The Matrix adapter (``casebot run matrix``): matrix-nio wiring and Matrix rendering only."""
