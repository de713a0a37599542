"""The keys are written once: the footer's bindings, the help screen and the palette agree."""

from __future__ import annotations

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
