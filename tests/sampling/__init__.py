"""Tests of liquidgen.inference.sampling and liquidgen.inference.generation."""
