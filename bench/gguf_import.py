"""Importing the SmolLM2 GGUF: workbench's converter next to plain transformers, measured in the same run.

Each measurement is a fresh subprocess (cold interpreter, warm OS file cache), timed from spawn to a
saved bf16 folder. Variants, run interleaved:
  workbench     core.models.gguf.convert_gguf: one shared GGUF parse, load float32, cast to bf16
  ours-bf16     the same, but loading with dtype=bfloat16 directly
  transformers  AutoTokenizer + AutoModelForCausalLM(dtype=bfloat16) from the GGUF, then save_pretrained
Usage: python bench/gguf_import.py [--runs N] [--only a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = r'''
import sys, time, json
spawned, kind, out = float(sys.argv[1]), sys.argv[2], sys.argv[3]
from pathlib import Path
import torch
from workbench.core.models.starter import smollm2_gguf
from workbench.core.models import gguf as g
path = smollm2_gguf()
if kind == "workbench":
    g.convert_gguf(path, Path(out))
elif kind == "ours-bf16":
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    g.quiet_transformers()
    with g.shared_gguf_parse():
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, config=config,
                                                     dtype=torch.bfloat16)
    model.hf_quantizer = None; del model.config.quantization_config
    model.save_pretrained(out); tok.save_pretrained(out)
else:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    g.quiet_transformers()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.bfloat16)
    model.hf_quantizer = None; del model.config.quantization_config
    model.save_pretrained(out); tok.save_pretrained(out)
print(json.dumps({"kind": kind, "seconds": time.time() - spawned}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", default="workbench,ours-bf16,transformers")
    args = parser.parse_args()
    kinds = args.only.split(",")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for run in range(args.runs):
        for kind in kinds:
            with tempfile.TemporaryDirectory() as out:
                result = subprocess.run([sys.executable, "-c", CHILD, str(time.time()), kind, out], env=env,
                                        capture_output=True, text=True, check=True)
            seconds = json.loads(result.stdout.strip().splitlines()[-1])["seconds"]
            times[kind].append(seconds)
            print(f"run {run + 1} {kind:12s} {seconds:6.1f} s  (load average {os.getloadavg()[0]:.1f})",
                  flush=True)
    print("medians:", {kind: round(statistics.median(values), 1) for kind, values in times.items()})


if __name__ == "__main__":
    main()
