"""Secret scrubbing: what flowkit writes never carries keys, tokens or credentials."""

from __future__ import annotations

import pytest

from flowkit.redact import MASK, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {MASK}"),
        ('{"authorization": "Basic QWxhZGRpbg=="}', f'{{"authorization": "Basic {MASK}"}}'),
        ("sent bearer eyJhbGciOi.J9 upstream", f"sent bearer {MASK} upstream"),
        ("GET /v1?api_key=abc123&page=2", f"GET /v1?api_key={MASK}&page=2"),
        ("key sk-proj-AbCdEf0123456789 rejected", f"key {MASK} rejected"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123", f"token {MASK}"),
        ("id AKIAABCDEFGHIJKLMNOP used", f"id {MASK} used"),
        ("nothing secret here: sk-1", "nothing secret here: sk-1"),
    ],
)
def test_known_secret_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text, environ={}) == expected


def test_values_of_secret_environment_variables_are_masked() -> None:
    env = {
        "MY_SERVICE_API_KEY": "opaque-value-42",
        "HF_TOKEN": "another-opaque-1",
        "DB_SECRET": "hunter2hunter2",
        "HOME": "/root",
        "DEBUG_TOKEN": "1",  # too short to be a secret; masking it would blank out text
    }
    text = "calls with opaque-value-42, another-opaque-1 and hunter2hunter2 from /root, 1 time"
    assert redact(text, environ=env) == (f"calls with {MASK}, {MASK} and {MASK} from /root, 1 time")


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "not-shaped-like-a-key-99")
    assert redact("error for not-shaped-like-a-key-99") == f"error for {MASK}"
