"""Evaluation harness: ``liquidgen eval t2i|vqa|text|tokenizer|all|fid``.

One module per task, each usable from Python without the CLI:

- :mod:`.t2i` — GenEval-like prompts, N images per prompt at every size, scored exactly by
  the world's parser; seen and held-out compositions apart;
- :mod:`.vqa` — exact-match accuracy per question type on world renders and easy-VQA;
- :mod:`.text` — perplexity on held-out real text;
- :mod:`.tokenizer` — PSNR and scene round trip of the VQGAN on world renders;
- :mod:`.fid` — Fréchet distance with a pluggable feature network;
- :mod:`.harness` — one run over a checkpoint; :mod:`.report` — JSON, markdown, sample grid;
- :mod:`.cli` — the command line.

Nothing is imported here, so ``liquidgen --help`` does not load torch through this package.
"""
