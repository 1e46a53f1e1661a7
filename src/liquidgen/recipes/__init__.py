"""End-to-end recipes that chain liquidgen's commands (``python -m liquidgen.recipes.build``)."""
