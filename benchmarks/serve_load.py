"""Load and fault test of ``liquidgen serve`` (loopback only, bounded in requests and time).

Starts ``liquidgen serve`` on free 127.0.0.1 ports in child processes:

1. **throughput and 1-client latency**, ``--launches`` times (default 3): a fresh server
   answers one client's requests one after another (p50 seconds per image after a warm-up
   request), then images/s with 1, 4, 16 and 64 concurrent clients, each sending one-image
   requests back to back (1 client is "the same requests one at a time"); then a fresh
   process runs ``Pipeline`` (what ``liquidgen generate`` runs; seconds per image after a
   warm-up). Fresh processes each time because the per-step speed of a tiny model differs
   between launches of the same process by up to ~25% on these 2-vCPU machines: ratios are
   taken within a launch and their medians reported.
2. **mixed load** on one more server: ``--clients`` concurrent clients (default 64) send
   ``--requests`` requests in all (default 192), mixing text-to-image, VQA on an uploaded
   image and streamed chat; ``--kill`` of the streamed chats are dropped after their first
   chunk (a client killed mid-stream). Reports p50/p95 latency per kind, throughput, 429s,
   errors, lost (no answer) and hung (client timeout) requests, and the server's RSS before,
   at peak and after (sampled from /proc every 0.25 s); then checks the server still answers.

Every request has a timeout (``--timeout``) and the whole run stops after ``--deadline``
seconds. Prints Markdown tables (and ``--json`` writes the numbers).

    python benchmarks/serve_load.py --model models/liquidgen-tiny --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from machine_info import machine

HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        command = [sys.executable, "-m", "liquidgen.cli", "serve", "--host", HOST]
        command += ["--port", str(self.port), "--max-queue", str(args.max_queue)]
        command += ["--max-rows", str(args.max_rows), "--timeout", str(args.timeout)]
        if args.model:
            command += ["--model", args.model]
        if args.threads:
            command += ["--threads", str(args.threads)]
        self.process = subprocess.Popen(command, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("the server exited")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit("the server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


PROMPTS = [
    "a red circle on the left",
    "a blue square at the top",
    "a green triangle in the centre",
    "a yellow star on the right",
]
QUESTIONS = ["What colour is the shape?", "Where is the shape?", "What shape is it?"]


async def one_request(
    http: httpx.AsyncClient, kind: str, k: int, image_url: str, kill: bool, timeout: float
) -> dict:
    started = time.monotonic()
    result = {"kind": kind, "status": None, "seconds": None, "killed": False}
    try:
        if kind == "image":
            body = {"prompt": PROMPTS[k % len(PROMPTS)], "seed": k}
            r = await http.post("/v1/images/generations", json=body, timeout=timeout)
            result["status"] = r.status_code
            if r.status_code == 200:
                assert r.json()["data"][0]["b64_json"]
        elif kind == "vqa":
            content = [
                {"type": "text", "text": QUESTIONS[k % len(QUESTIONS)]},
                {"type": "image_url", "image_url": {"url": image_url}},
            ]
            body = {"messages": [{"role": "user", "content": content}], "max_tokens": 16}
            r = await http.post("/v1/chat/completions", json=body, timeout=timeout)
            result["status"] = r.status_code
        else:  # streamed chat
            body = {
                "messages": [{"role": "user", "content": "Describe a picture of shapes."}],
                "max_tokens": 32,
                "stream": True,
            }
            async with http.stream("POST", "/v1/chat/completions", json=body, timeout=timeout) as r:
                result["status"] = r.status_code
                if r.status_code == 200:
                    last = None
                    async for line in r.aiter_lines():
                        if line:
                            last = line
                            if kill:  # a client killed mid-stream: drop the connection
                                result["killed"] = True
                                break
                    if not kill and last != "data: [DONE]":
                        result["status"] = "truncated"
    except httpx.TimeoutException:
        result["status"] = "hung"
    except httpx.HTTPError as e:
        result["status"] = f"error: {type(e).__name__}"
    result["seconds"] = time.monotonic() - started
    return result


async def mixed_load(server: Server, args: argparse.Namespace, image_url: str) -> dict:
    rng = random.Random(0)
    kinds = ["image", "image", "vqa", "chat"]
    plan = [rng.choice(kinds) for _ in range(args.requests)]
    chats = [i for i, k in enumerate(plan) if k == "chat"]
    killed = set(chats[: args.kill])
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(plan)):
        queue.put_nowait(i)
    results: list[dict] = []
    memory: list[float] = []
    stop = asyncio.Event()

    async def sample_memory() -> None:
        while not stop.is_set():
            memory.append(rss_mb(server.process.pid))
            await asyncio.sleep(0.25)

    async def client() -> None:
        limits = httpx.Limits(max_connections=2)
        async with httpx.AsyncClient(base_url=server.url, limits=limits) as http:
            while not queue.empty():
                i = queue.get_nowait()
                while True:
                    r = await one_request(http, plan[i], i, image_url, i in killed, args.timeout)
                    results.append(r)
                    if r["status"] != 429:
                        break
                    await asyncio.sleep(1.0)  # Retry-After

    before = rss_mb(server.process.pid)
    sampler = asyncio.create_task(sample_memory())
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(args.clients))), args.deadline)
    wall = time.monotonic() - started
    stop.set()
    await sampler
    await asyncio.sleep(2)
    after = rss_mb(server.process.pid)
    async with httpx.AsyncClient(base_url=server.url) as http:
        alive = (await http.get("/health")).status_code == 200
        probe = await http.post(
            "/v1/images/generations", json={"prompt": "a red circle", "seed": 1}, timeout=600
        )
        metrics = (await http.get("/metrics")).text
    answered = [r for r in results if r["status"] != 429]
    return {
        "plan": {k: plan.count(k) for k in set(plan)},
        "results": results,
        "wall": wall,
        "answered": answered,
        "rss": (before, max(memory) if memory else float("nan"), after),
        "alive_after": alive and probe.status_code == 200,
        "metrics": metrics,
    }


async def throughput(server: Server, clients: int, images: int, timeout: float) -> dict:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(images):
        queue.put_nowait(i)
    latencies: list[float] = []
    statuses: list = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=server.url) as http:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.monotonic()
                body = {"prompt": PROMPTS[i % len(PROMPTS)], "seed": i}
                r = await http.post("/v1/images/generations", json=body, timeout=timeout)
                statuses.append(r.status_code)
                latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.monotonic() - started
    return {
        "clients": clients,
        "images": images,
        "wall": wall,
        "images_per_s": images / wall,
        "p50": percentile(latencies, 0.5),
        "ok": statuses.count(200),
    }


def single_path_seconds(model: str | None, images: int, threads: int | None) -> float:
    import torch

    from liquidgen.assets import TINY_MODEL, shipped
    from liquidgen.inference.pipeline import Pipeline

    if threads:
        torch.set_num_threads(threads)
    pipe = Pipeline.from_pretrained(model or shipped(TINY_MODEL), device="cpu")
    pipe(PROMPTS[0], seed=0)  # warm-up
    started = time.monotonic()
    for i in range(images):
        pipe(PROMPTS[i % len(PROMPTS)], seed=i)
    return (time.monotonic() - started) / images


def single_path_in_fresh_process(args: argparse.Namespace, images: int) -> float:
    """``single_path_seconds`` in a new interpreter (as a ``liquidgen generate`` run is)."""
    command = [sys.executable, __file__, "--single-path", str(images)]
    command += ["--model", args.model] if args.model else []
    command += ["--threads", str(args.threads)] if args.threads else []
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


async def one_client_latency(server: Server, images: int, timeout: float) -> float:
    """p50 seconds per image of one client sending ``images`` requests back to back."""
    latencies = []
    async with httpx.AsyncClient(base_url=server.url) as http:
        for i in range(images + 1):  # the first is a warm-up, as in the single path
            started = time.monotonic()
            body = {"prompt": PROMPTS[i % len(PROMPTS)], "seed": i}
            r = await http.post("/v1/images/generations", json=body, timeout=timeout)
            r.raise_for_status()
            if i:
                latencies.append(time.monotonic() - started)
    return percentile(latencies, 0.5)


def launches(args: argparse.Namespace) -> dict:
    """``--launches`` times: a fresh server measures the 1-client latency and the throughput
    levels, then a fresh process the single path. Per-launch speed varies (see the module
    docstring), so ratios are taken within a launch and their medians reported."""
    levels = [int(v) for v in args.levels.split(",")]
    counts = [int(v) for v in args.images.split(",")]
    served, single, runs = [], [], []
    for _ in range(args.launches):
        server = Server(args)
        try:
            server.wait_ready()
            served.append(asyncio.run(one_client_latency(server, args.latency_images, 120)))
            runs.append(
                [
                    asyncio.run(throughput(server, c, n, args.timeout))
                    for c, n in zip(levels, counts, strict=True)
                ]
            )
        finally:
            server.stop()
        single.append(single_path_in_fresh_process(args, args.latency_images))
    table = []
    for k, (clients, images) in enumerate(zip(levels, counts, strict=True)):
        at = [run[k] for run in runs]
        table.append(
            {
                "clients": clients,
                "images": images,
                "images_per_s": percentile([r["images_per_s"] for r in at], 0.5),
                "vs_1_client": percentile(
                    [run[k]["images_per_s"] / run[0]["images_per_s"] for run in runs], 0.5
                ),
                "ratios": [run[k]["images_per_s"] / run[0]["images_per_s"] for run in runs],
                "p50": percentile([r["p50"] for r in at], 0.5),
                "ok": sum(r["ok"] for r in at),
                "sent": images * len(runs),
            }
        )
    mid_served, mid_single = percentile(served, 0.5), percentile(single, 0.5)
    return {
        "throughput": table,
        "served_p50_s": served,
        "single_path_s": single,
        "served_median_s": mid_served,
        "single_median_s": mid_single,
        "overhead": mid_served / mid_single - 1,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint (default: models/liquidgen-tiny)")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the server")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--requests", type=int, default=192)
    p.add_argument("--kill", type=int, default=8, help="streamed chats dropped mid-stream")
    p.add_argument("--max-queue", type=int, default=256)
    p.add_argument("--max-rows", type=int, default=128)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per request")
    p.add_argument("--deadline", type=float, default=3600.0, help="seconds for the mixed load")
    p.add_argument("--levels", default="1,4,16,64", help="concurrent clients for images/s")
    p.add_argument(
        "--images", default="8,16,64,192", help="images sent at each level (several per client)"
    )
    p.add_argument("--skip-mixed", action="store_true")
    p.add_argument(
        "--launches", type=int, default=3, help="fresh server launches (throughput, latency)"
    )
    p.add_argument("--latency-images", type=int, default=8, help="images per latency launch")
    p.add_argument("--single-path", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="write the numbers here")
    args = p.parse_args()
    if args.single_path is not None:  # the child of single_path_in_fresh_process
        print(single_path_seconds(args.model, args.single_path, args.threads))
        return

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (220, 30, 30)).save(buffer, format="PNG")
    image_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    report: dict = {"machine_start": machine()}
    print(f"# {report['machine_start']}")
    measured = launches(args)
    print(f"\nthroughput: median over {args.launches} fresh launches (ratios within a launch)")
    print("\n| clients | images/s | vs 1 client (per launch) | p50 latency s | ok |")
    print("|---|---|---|---|---|")
    for r in measured["throughput"]:
        ratios = ", ".join(f"{v:.1f}" for v in r["ratios"])
        print(
            f"| {r['clients']} | {r['images_per_s']:.2f} | {r['vs_1_client']:.1f}x ({ratios}) | "
            f"{r['p50']:.2f} | {r['ok']}/{r['sent']} |"
        )
    print(
        f"\n1-client latency, {args.latency_images} images per launch: served p50 "
        f"{measured['served_median_s']:.3f} s/image "
        f"({', '.join(f'{v:.3f}' for v in measured['served_p50_s'])}); single path "
        f"(Pipeline, as `liquidgen generate`) {measured['single_median_s']:.3f} s/image "
        f"({', '.join(f'{v:.3f}' for v in measured['single_path_s'])}); "
        f"overhead {measured['overhead']:+.0%}"
    )
    report.update(measured)
    server = Server(args)
    try:
        server.wait_ready()
        if not args.skip_mixed:
            mixed = asyncio.run(mixed_load(server, args, image_url))
            answered = mixed["answered"]
            ok = [r for r in answered if r["status"] == 200]
            rejected = len(mixed["results"]) - len(answered)
            errors = [r for r in answered if r["status"] != 200]
            hung = [r for r in answered if r["status"] == "hung"]
            killed = [r for r in answered if r["killed"]]
            print(
                f"\nmixed load: {args.clients} clients, {args.requests} requests "
                f"{mixed['plan']}, {args.kill} streams killed after the first chunk"
            )
            print("\n| kind | done | p50 s | p95 s |")
            print("|---|---|---|---|")
            for kind in ("image", "vqa", "chat"):
                secs = [r["seconds"] for r in ok if r["kind"] == kind and not r["killed"]]
                print(
                    f"| {kind} | {len(secs)} | {percentile(secs, 0.5):.2f} | "
                    f"{percentile(secs, 0.95):.2f} |"
                )
            before, peak, after = mixed["rss"]
            lost = args.requests - len(answered)
            print(
                f"\nwall {mixed['wall']:.1f} s, {len(ok) / mixed['wall']:.2f} requests/s; "
                f"429s {rejected}; errors {len(errors) - len(hung)}; hung {len(hung)}; "
                f"lost {lost}; killed mid-stream {len(killed)}; server RSS MB before "
                f"{before:.0f}, peak {peak:.0f}, after {after:.0f}; serving after: "
                f"{mixed['alive_after']}"
            )
            cancelled = [
                line
                for line in mixed["metrics"].splitlines()
                if line.startswith("liquidgen_jobs_cancelled_total")
            ]
            print(f"server: {' '.join(cancelled)}")
            report["mixed"] = {k: v for k, v in mixed.items() if k not in ("results", "answered")}
            report["mixed"]["errors"] = [r for r in errors]
    finally:
        server.stop()
    report["machine_end"] = machine()
    print(f"# {report['machine_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
