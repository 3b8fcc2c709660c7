"""Test tooling shipped with the provider: the AIReiter emulator and its opt-in pytest plugin.

Production code (hooks, operators, sensor, trigger, webhook, plugins) never imports this package;
``tests/provider/test_fresh_install.py`` checks that.
"""
