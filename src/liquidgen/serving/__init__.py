"""``liquidgen serve``: an OpenAI-compatible HTTP API and a web page over one batched engine.

- :mod:`liquidgen.serving.jobs` — what the engine is asked (jobs) and answers (events);
- :mod:`liquidgen.serving.engine` — the scheduler: continuous batching of every user's image
  and text sequences, one forward per step;
- :mod:`liquidgen.serving.schemas` — request bodies parsed and checked (limits, strict JSON);
- :mod:`liquidgen.serving.requests` — a checked body resolved against the checkpoint into a job;
- :mod:`liquidgen.serving.responses` — engine events to JSON, server-sent events and PNG;
- :mod:`liquidgen.serving.state` — the loaded model, the API key guard, submitting jobs;
- :mod:`liquidgen.serving.app` — the FastAPI app's routes and the page;
- :mod:`liquidgen.serving.cli` — ``liquidgen serve``.

See docs/serving.md.
"""
