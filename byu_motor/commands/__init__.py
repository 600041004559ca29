"""Command modules of the `byu-motor` CLI (one module per sub-command)."""
