"""Full-text search: ranked hits, filters, and an index that follows edits and deletions."""

from __future__ import annotations

from tasks.store import (
    MessageStore,
    delete_from_index,
    index_message,
    search,
    update_index,
)
from tests.store.helpers import found


async def _index(store: MessageStore, *entries: tuple[str, str, str, str]) -> None:
    async with store.transaction() as session:
        for message_id, conversation_id, sender_id, text in entries:
            await index_message(
                session,
                message_id=message_id,
                conversation_id=conversation_id,
                sender_id=sender_id,
                text=text,
            )


async def test_messages_matching_more_words_or_more_often_rank_higher(store: MessageStore) -> None:
    await _index(
        store,
        ("one-word", "c1", "alice", "the budget numbers are attached here"),
        ("both-words", "c1", "alice", "the quarterly budget report is attached"),
        ("unrelated", "c1", "alice", "lunch at noon tomorrow with the team"),
        ("once", "c2", "bob", "invoice for march, due on friday please"),
        ("thrice", "c2", "bob", "invoice, invoice and another invoice due"),
    )
    assert await found(store, "budget report") == ["both-words", "one-word"]
    assert await found(store, "invoice") == ["thrice", "once"]
    async with store.transaction() as session:
        hits = await search(session, "Budget REPORTS")  # case and plural do not matter
    assert [hit.message_id for hit in hits] == ["both-words", "one-word"]
    assert hits[0].rank > hits[1].rank
    assert (hits[0].conversation_id, hits[0].sender_id) == ("c1", "alice")


async def test_filters_by_conversation_and_sender(store: MessageStore) -> None:
    await _index(
        store,
        ("m1", "c1", "alice", "deploy tonight"),
        ("m2", "c1", "bob", "deploy tomorrow"),
        ("m3", "c2", "alice", "deploy next week"),
    )
    assert sorted(await found(store, "deploy")) == ["m1", "m2", "m3"]
    assert sorted(await found(store, "deploy", conversation_id="c1")) == ["m1", "m2"]
    assert sorted(await found(store, "deploy", sender_id="alice")) == ["m1", "m3"]
    assert await found(store, "deploy", conversation_id="c1", sender_id="alice") == ["m1"]
    async with store.transaction() as session:
        assert len(await search(session, "deploy", limit=2)) == 2


async def test_a_deleted_message_is_no_longerfound(store: MessageStore) -> None:
    await _index(store, ("m1", "c1", "alice", "secret plans"), ("m2", "c1", "bob", "plans"))
    async with store.transaction() as session:
        assert await delete_from_index(session, "m1")
        assert not await delete_from_index(session, "m1")
    assert await found(store, "plans") == ["m2"]
    assert await found(store, "secret") == []


async def test_an_edit_changes_what_matches(store: MessageStore) -> None:
    await _index(store, ("m1", "c1", "alice", "meet at the station"))
    async with store.transaction() as session:
        assert await update_index(session, "m1", "meet at the airport")
        assert not await update_index(session, "never-indexed", "anything")
    assert await found(store, "station") == []
    assert await found(store, "airport") == ["m1"]


async def test_indexing_again_replaces_the_entry(store: MessageStore) -> None:
    await _index(store, ("m1", "c1", "alice", "first draft"))
    await _index(store, ("m1", "c1", "alice", "final version"))
    assert await found(store, "draft") == []
    assert await found(store, "final draft") == ["m1"]


async def test_query_syntax_in_user_input_is_just_text(store: MessageStore) -> None:
    await _index(store, ("m1", "c1", "alice", "price: 10 OR more (approx)"))
    assert await found(store, 'price" OR (* NEAR -x:') == ["m1"]
    assert await found(store, "  ?!  ") == []
