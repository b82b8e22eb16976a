"""Serving throughput: aggregate decode tokens/s of 8 concurrent clients against one stream, same server.

Starts `workbench serve MODEL` (a real process on loopback), then alternates rounds of one client and of
N concurrent clients (threads), each sending chat completions through the official openai client with
temperature 0 and max_tokens = min_tokens = T, so every reply is exactly T tokens long. Aggregate tokens/s
= completion tokens of the round / its wall time. Rounds are interleaved (1, N, 1, N, ...) so that load
from other processes on the machine hits both alike; the ratio of the medians is printed.

    .venv/bin/python bench/serve_throughput.py --model smollm2                 # in $WORKBENCH_HOME
    .venv/bin/python bench/serve_throughput.py --folder path/to/hf-model       # a temporary workspace
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUESTIONS = ["What did the Red Queen say to Alice?", "Tell me about the raven.", "Why is a raven like a desk?",
             "Describe the Cheshire Cat.", "Who is the Mad Hatter?", "Summarise a poem by Poe.",
             "What is a rabbit hole?", "Write one line about tea."]


def start_server(home: str, model: str, dtype: str | None):
    from workbench.server.process import ServeProcess

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return ServeProcess(home, [model], *(["--dtype", dtype] if dtype else []), env=env,
                        log_path=Path(tempfile.mkdtemp(prefix="serve-bench-log-")) / "serve.log")


def one_round(client, model: str, clients: int, requests: int, tokens: int) -> tuple[int, float]:
    """(completion tokens, seconds) of `clients` threads each sending `requests` requests."""
    counts = [0] * clients

    def work(index: int) -> None:
        for number in range(requests):
            question = QUESTIONS[(index + number) % len(QUESTIONS)]
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}], max_tokens=tokens,
                temperature=0, extra_body={"min_tokens": tokens})
            counts[index] += reply.usage.completion_tokens

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="a registered model (default smollm2)")
    parser.add_argument("--home", default=os.environ.get("WORKBENCH_HOME", "."), help="the workspace")
    parser.add_argument("--folder", help="register this Hugging Face folder in a temporary workspace instead")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32, help="tokens per reply (max_tokens = min_tokens)")
    parser.add_argument("--requests", type=int, default=2, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind, interleaved")
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16"], help="serve in this dtype")
    args = parser.parse_args()

    import openai

    home = args.home
    if args.folder:
        home = tempfile.mkdtemp(prefix="serve-bench-")
        args.model = "bench"
        subprocess.run([sys.executable, "-m", "workbench.cli", "--home", home, "models", "add", "bench", args.folder],
                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    server = start_server(home, args.model, args.dtype)
    try:
        client = openai.OpenAI(base_url=server.url, api_key="bench", max_retries=0, timeout=3600)
        one_round(client, args.model, 1, 1, 4)  # warm-up: loads the model
        single, many = [], []
        for _ in range(args.rounds):
            tokens, seconds = one_round(client, args.model, 1, args.requests, args.tokens)
            single.append(tokens / seconds)
            tokens, seconds = one_round(client, args.model, args.clients, args.requests, args.tokens)
            many.append(tokens / seconds)
            print(f"round: 1 stream {single[-1]:.1f} tok/s, {args.clients} clients {many[-1]:.1f} tok/s", flush=True)
        batches = [line.split("batch of ")[1].split()[0] for line in server.log().splitlines() if "batch of" in line]
    finally:
        server.stop()
    one, agg = statistics.median(single), statistics.median(many)
    load = os.getloadavg()[0]
    print(f"model {args.model}, {args.tokens} tokens per reply, {args.requests} requests per client per round, "
          f"{args.rounds} rounds each, load average {load:.1f} on {os.cpu_count()} cores")
    print(f"one stream (peer):        {one:8.1f} tokens/s")
    print(f"{args.clients} concurrent clients:    {agg:8.1f} tokens/s aggregate")
    print(f"speed-up:                 {agg / one:8.2f}x")
    print(f"batch sizes the server decoded: {' '.join(batches)}")


if __name__ == "__main__":
    main()
