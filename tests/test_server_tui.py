"""The app's serve key: s on the model list starts `workbench serve` for the selected model, shows its URL,
and s again stops it."""

from __future__ import annotations

import re

import httpx
from tui_helpers import SIZE, notes, settle

from workbench.tui.app import WorkbenchApp


async def test_s_starts_and_stops_serving_the_selected_model(home):
    app = WorkbenchApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        found = [re.search(r"serving 'tiny-neo' at (\S+)", n) for n in notes(app)]
        url = next(m.group(1) for m in found if m)
        assert httpx.get(f"{url}/models").json()["data"][0]["id"] == "tiny-neo"
        server = app.screen._servers["tiny-neo"]
        await pilot.press("s")
        await settle(pilot)
        assert "stopped serving 'tiny-neo'" in notes(app)
        assert server.proc.poll() == 0
