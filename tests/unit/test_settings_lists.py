"""The comma-list settings: split, blanks dropped, each item checked, one-line errors."""

from __future__ import annotations

import pytest

from runner.settings import Settings


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("tool_env", " PATH, ,HOME ", ("PATH", "HOME")),
        ("tools", "a.b:c, ,d.e:f", ("a.b:c", "d.e:f")),
        ("workspace_ignore", "*.log, build/ ,", ("*.log", "build/")),
        ("approve_tools", "shell, write_file,shell", ("shell", "write_file")),
        ("sentinels", "h1:26379, [::1]:26380", ("h1:26379", "[::1]:26380")),
    ],
)
def test_a_comma_list_is_split_and_trimmed(field: str, raw: str, expected: tuple[str, ...]) -> None:
    settings = Settings.model_validate({field: raw})
    assert tuple(getattr(settings, field)) == expected


@pytest.mark.parametrize(
    ("field", "raw", "says"),
    [
        ("tool_env", "PATH,9bad", "not a variable name: '9bad'"),
        ("approve_tools", "shell,bad name", "not a tool name: 'bad name'"),
        ("sentinels", "h1:26379,h2", "each sentinel is host:port"),
    ],
)
def test_a_bad_item_is_named(field: str, raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Settings.model_validate({field: raw})
