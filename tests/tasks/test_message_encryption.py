"""encrypt-decrypt and rotate-keys through a real worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from config.encryption import EncryptionSettings
from config.settings import PostroomSettings
from tasks.encryption import Envelope
from tasks.message_delivery import send_message
from tasks.message_encryption import encrypt_decrypt, rotate_keys
from tasks.payloads import EncryptionJob, SendMessage
from tasks.store import MessageStore, get_message, save_message
from tests.conftest import running_worker
from tests.tasks.conftest import KEY_A, KEY_B, b64, with_settings
from workers.client import PostroomClient
from workers.runner.supervisor import Supervisor

TEXTS = {f"m-{n}": f"secret number {n}" for n in range(3)}


async def key_ids(db: MessageStore) -> dict[str, str | None]:
    async with db.transaction() as session:
        return {
            message_id: message.key_id
            for message_id in TEXTS
            if (message := await get_message(session, message_id)) is not None
        }


async def test_rotation_moves_every_message_to_the_new_key_and_decrypt_still_works(
    task_settings: PostroomSettings, task_client: PostroomClient, db: MessageStore
) -> None:
    async with running_worker(task_settings):
        for message_id, text in TEXTS.items():
            sent = SendMessage(
                message_id=message_id,
                sender_id="alice",
                recipient_id="bob",
                conversation_id="c-1",
                content=text,
                requires_encryption=True,
            )
            await (await task_client.enqueue(send_message.call(sent))).result(timeout=30)
    assert await key_ids(db) == dict.fromkeys(TEXTS, "a")

    # The operator adds key b, makes it active and keeps a until the rotation is done.
    rotated_settings = with_settings(
        task_settings,
        encryption=EncryptionSettings(keys={"a": b64(KEY_A), "b": b64(KEY_B)}, active_key_id="b"),
    )
    # The web app shares the keyring (it seals the jobs' payloads with it): restarted too.
    async with (
        running_worker(rotated_settings),
        await PostroomClient.connect(rotated_settings) as rotated_client,
    ):
        rotation = await (await rotated_client.enqueue(rotate_keys.call())).result(timeout=30)
        again = await (await rotated_client.enqueue(rotate_keys.call())).result(timeout=30)
    assert (rotation.rotated, rotation.active_key_id, again.rotated) == (3, "b", 0)
    assert await key_ids(db) == dict.fromkeys(TEXTS, "b")

    # Key a is gone now; every message still decrypts.
    only_b = with_settings(task_settings, encryption=EncryptionSettings(keys={"b": b64(KEY_B)}))
    async with running_worker(only_b), await PostroomClient.connect(only_b) as only_b_client:
        for message_id, text in TEXTS.items():
            job = EncryptionJob(message_id=message_id, operation="decrypt")
            result = await (await only_b_client.enqueue(encrypt_decrypt.call(job))).result(30)
            assert (result.plaintext, result.key_id) == (text, "b")


async def test_a_plaintext_message_is_encrypted_at_rest_once(
    task_client: PostroomClient, worker: Supervisor, db: MessageStore
) -> None:
    async with db.transaction() as session:
        await save_message(
            session, message_id="m-0", conversation_id="c", sender_id="s", content=TEXTS["m-0"]
        )
    job = EncryptionJob(message_id="m-0", operation="encrypt")
    first = await (await task_client.enqueue(encrypt_decrypt.call(job))).result(timeout=30)
    second = await (await task_client.enqueue(encrypt_decrypt.call(job))).result(timeout=30)

    assert (first.changed, first.key_id, second.changed) == (True, "a", False)
    async with db.transaction() as session:
        stored = await get_message(session, "m-0")
    assert stored is not None and stored.encrypted
    envelope = Envelope.from_text(stored.content)
    # The envelope text given as content decrypts the same, without the store.
    decrypt = EncryptionJob(message_id="m-0", operation="decrypt", content=envelope.to_text())
    result = await (await task_client.enqueue(encrypt_decrypt.call(decrypt))).result(30)
    assert result.plaintext == TEXTS["m-0"]


async def test_decrypting_under_another_message_id_fails_permanently(
    task_client: PostroomClient, worker: Supervisor, db: MessageStore
) -> None:
    job = EncryptionJob(message_id="m-0", operation="encrypt")
    async with db.transaction() as session:
        await save_message(
            session, message_id="m-0", conversation_id="c", sender_id="s", content="text"
        )
    await (await task_client.enqueue(encrypt_decrypt.call(job))).result(timeout=30)
    async with db.transaction() as session:
        stored = await get_message(session, "m-0")
    assert stored is not None
    # The ciphertext copied onto another message id does not authenticate.
    moved = EncryptionJob(message_id="m-9", operation="decrypt", content=stored.content)
    handle = await task_client.enqueue(encrypt_decrypt.call(moved))
    with pytest.raises(Exception, match="authentication failed"):
        await handle.result(timeout=30)
    letter = await task_client.dead_letters.get(handle.job_id)
    assert letter is not None and letter.tries == 1 and letter.reason == "permanent"
