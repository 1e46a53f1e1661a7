"""Tests of liquidgen.sampling and liquidgen.generation."""
