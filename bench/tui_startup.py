"""Time to first paint of the Workbench app next to a bare Textual app, measured in the same run.

Each measurement is a fresh subprocess (cold interpreter, warm OS file cache). The child records the
time the process was spawned (passed in by the parent), runs the app headless, and when the first
screen has been mounted and painted (a callback after the screen's first refresh) prints the elapsed
time and whether torch was imported, then exits. Runs alternate between the two apps; the medians are
printed. Usage: python bench/tui_startup.py [--runs N] [--home DIR]
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

CHILD = r'''
import sys, time, json
spawned = float(sys.argv[1]); kind = sys.argv[2]; home = sys.argv[3]
if kind == "bare":
    from textual.app import App
    from textual.widgets import Footer, Header, Static

    class Bare(App):
        def compose(self):
            yield Header()
            yield Static("hello")
            yield Footer()

    app = Bare()
    def ready(app):
        return bool(app.screen.query(Static))
else:
    from workbench.tui.app import WorkbenchApp
    app = WorkbenchApp(home)
    def ready(app):
        try:
            return app.screen.query_one("#models-table").row_count > 0
        except Exception:
            return False

result = {}

async def pilot(pilot):
    while not ready(pilot.app):
        await pilot.pause(0.005)
    def painted():
        result["first_paint_s"] = time.time() - spawned
        result["cpu_s"] = time.process_time()  # this process's CPU seconds: barely moved by other load
        result["torch"] = "torch" in sys.modules
        pilot.app.exit()
    pilot.app.screen.call_after_refresh(painted)

app.run(headless=True, size=(100, 30), auto_pilot=pilot)
print(json.dumps(result))
'''


def measure(kind: str, home: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    spawned = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, repr(spawned), kind, home], capture_output=True,
                         text=True, env=env, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--home", default=None, help="workspace to open (default: a fresh one with the starter model)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    home = args.home
    if home is None:
        from workbench.core.context import open_workspace

        home = tempfile.mkdtemp(prefix="wb-tui-bench-")
        open_workspace(home).registry.close()  # with the starter model, as after `workbench init`
    measure("bare", home)  # warm the OS file cache for both
    measure("workbench", home)
    results: dict[str, list[dict]] = {"bare": [], "workbench": []}
    for _ in range(args.runs):
        for kind in results:
            results[kind].append(measure(kind, home))
    print(f"time to first paint, median of {args.runs} cold subprocess runs (headless, 100x30):")
    medians = {}
    for kind, label in (("bare", "bare Textual app (Header, Static, Footer)"),
                        ("workbench", "workbench app (Models screen, registry read)")):
        times = [r["first_paint_s"] for r in results[kind]]
        medians[kind] = statistics.median(times)
        cpu = statistics.median(r["cpu_s"] for r in results[kind])
        torch = any(r["torch"] for r in results[kind])
        print(f"  {label:<46} {medians[kind] * 1000:7.0f} ms  (min {min(times) * 1000:.0f}, "
              f"max {max(times) * 1000:.0f}; CPU {cpu * 1000:.0f} ms; torch imported: {'yes' if torch else 'no'})")
    print(f"  difference: {(medians['workbench'] - medians['bare']) * 1000:+.0f} ms, ratio "
          f"{medians['workbench'] / medians['bare']:.2f}x; target: workbench < 500 ms on a quiet machine")
    print(f"  load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times grow with it)")
    return 0 if medians["workbench"] < 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
