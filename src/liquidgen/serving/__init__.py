"""``liquidgen serve``: an OpenAI-compatible HTTP API and a web page over one batched engine.

- :mod:`liquidgen.serving.engine` — the scheduler: continuous batching of every user's image
  and text sequences, one forward per step;
- :mod:`liquidgen.serving.schemas` — request bodies parsed and checked into engine jobs;
- :mod:`liquidgen.serving.app` — the FastAPI app (routes, limits, errors, metrics, the page);
- :mod:`liquidgen.serving.cli` — ``liquidgen serve``.

See docs/serving.md.
"""
