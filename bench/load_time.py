"""Model load to first token: workbench (load_model_folder + the decoder) against plain transformers
(from_pretrained + generate with max_new_tokens=1), each in a fresh process, interleaved, median of repeats.

Printed per side: import time (torch + transformers), load time, first-token time and load-to-first-token
(load + first token, the wait after the app or CLI is up; imports are paid once per process).

    /work/venv/bin/python bench/load_time.py --model smollm2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(THREADS)
t1 = time.perf_counter()
folder, side = FOLDER, SIDE
if side == "workbench":
    from workbench.core.decoding import decoder_for, end_token_ids
    from workbench.core.generation import GenerationSettings
    from workbench.core.models import LoadedModel, load_model_folder
    model, tokenizer, device = load_model_folder(folder, "cpu", "bf16")
    loaded = LoadedModel("m", model, tokenizer, device, 8192)
    t2 = time.perf_counter()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                        tokenize=False)
    ids = tokenizer(ids, add_special_tokens=False)["input_ids"]
    decoder_for(loaded).generate(ids, GenerationSettings(max_new_tokens=1), end_token_ids(model, tokenizer))
else:
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    t2 = time.perf_counter()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                         tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first": t3 - t2}))
"""


def run_side(side: str, folder: Path, threads: int) -> dict:
    code = CHILD.replace("THREADS", str(threads)).replace("FOLDER", repr(str(folder))).replace("SIDE", repr(side))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="a folder, or a model of the --home workspace")
    parser.add_argument("--home", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from decode_throughput import model_folder

    folder = model_folder(args.model, args.home)
    print(f"model: {folder}; torch threads {args.threads}; {args.repeats} interleaved repeats, each in a fresh "
          f"process; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    runs: dict[str, list[dict]] = {"workbench": [], "transformers": []}
    for _ in range(args.repeats):
        for side in runs:
            runs[side].append(run_side(side, folder, args.threads))
    for side, results in runs.items():
        med = {key: statistics.median(r[key] for r in results) for key in ("import", "load", "first")}
        total = statistics.median(r["load"] + r["first"] for r in results)
        print(f"{side:12s} import {med['import']:5.2f} s  load {med['load']:5.2f} s  first token {med['first']:5.2f} s"
              f"  load to first token {total:5.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
