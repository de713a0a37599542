"""The keys are written once (the footer's bindings, the help screen and the palette agree),
and the chosen theme is remembered."""

from __future__ import annotations

import pytest

from optiinfra_tui.tui.app import DashboardApp
from optiinfra_tui.tui.keys import KEYS, help_lines, palette
from optiinfra_tui.tui.screens.main import MainScreen


def test_every_binding_is_in_help_and_runs_a_real_action():
    shown = dict(help_lines())
    for binding in MainScreen.BINDINGS:
        assert (binding.key_display or binding.key) in shown, binding
        target = DashboardApp if binding.action.startswith("app.") else MainScreen
        assert hasattr(target, f"action_{binding.action.removeprefix('app.')}"), binding


def test_every_palette_command_runs_a_main_screen_action_and_names_its_key():
    for title, help_text, action in palette():
        assert hasattr(MainScreen, f"action_{action}"), title
        key = next(k for k in KEYS if k.action == action)
        if key.display:
            assert help_text.endswith(f"({key.display})"), title


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_chosen_theme_is_back_after_a_restart(tmp_path):
    from tui_pilot import loaded, make_app, make_runtime

    rt = make_runtime(tmp_path / "home")
    try:
        app = make_app(rt)
        default = app.theme
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            app.theme = "nord" if default != "nord" else "gruvbox"
            chosen = app.theme
            await pilot.pause()
        assert chosen != default
        # Only this user may read it, like every file of the data dir.
        assert (tmp_path / "home" / "tui.json").stat().st_mode & 0o777 == 0o600
        again = make_app(rt)
        async with again.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            assert again.theme == chosen
    finally:
        rt.close()
