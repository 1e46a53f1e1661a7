"""Tests of `liquidgen serve` (issue 19)."""
