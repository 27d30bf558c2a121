"""The declarations file: one source of truth, so a key declared twice is an error."""

from __future__ import annotations

import pytest

from common.declarations import load_declarations, parse_declarations_yaml


def test_a_key_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        parse_declarations_yaml("functions:\n  a: {trigger: http}\n  a: {trigger: http}\n")


def test_the_shipped_declarations_load():
    declarations = load_declarations()
    assert "appointment-events" in declarations.topics
