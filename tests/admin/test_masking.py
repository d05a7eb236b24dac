"""What an operator sees of a payload: bodies and secrets masked, ids and structure kept."""

from __future__ import annotations

from workers.observe.masking import MASK, mask


def test_message_bodies_are_masked_and_ids_kept() -> None:
    payload = {
        "message": {"messageId": "m1", "senderId": "u1", "content": "hi Bob", "priority": 2},
        "notification": {"title": "Hello {name}", "message": "Your code", "type": "push"},
    }
    assert mask(payload) == {
        "message": {"messageId": "m1", "senderId": "u1", "content": MASK, "priority": 2},
        "notification": {"title": MASK, "message": MASK, "type": "push"},
    }


def test_secret_looking_fields_are_masked_whatever_they_hold() -> None:
    payload = {
        "auth_token": "t",
        "apiKey": "k",
        "password": {"nested": 1},
        "recipientVariables": {"u1": {"name": "Bob"}},
        "Authorization": "Bearer x",
        "keyId": "2026-11",
        "messageId": "m1",
    }
    assert mask(payload) == {
        "auth_token": MASK,
        "apiKey": MASK,
        "password": MASK,
        "recipientVariables": MASK,
        "Authorization": MASK,
        "keyId": "2026-11",
        "messageId": "m1",
    }


def test_lists_under_a_body_field_are_masked_item_by_item_and_nulls_stay() -> None:
    assert mask({"body": ["a", "b"], "content": None, "items": [{"text": "x", "n": 1}]}) == {
        "body": [MASK, MASK],
        "content": None,
        "items": [{"text": MASK, "n": 1}],
    }
    assert mask(None) is None and mask([1, "a"]) == [1, "a"]
