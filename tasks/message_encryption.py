"""The message-encryption queue: `encrypt-decrypt` and `rotate-keys`.

Messages are sealed at rest with AES-256-GCM under the keyring's active key, the message id
bound as associated data (a ciphertext copied onto another message does not decrypt). Key
rotation: configure the new key as active, keep the old ones, run `rotate-keys`; every stored
message is re-encrypted under the new key, after which the old keys can be dropped.
"""

from __future__ import annotations

from config.queues import QueueName
from tasks.encryption import Envelope, Keyring, decrypt_async, encrypt_async, rotate_async
from tasks.errors import MessageNotFound
from tasks.payloads import EncryptionJob, EncryptionResult, RotationResult
from tasks.services import keyring, message_store, service
from tasks.store import encrypted_under_other_keys, get_message, store_sealed
from workers import JobContext, PermanentError, task

ROTATION_PAGE = 500


@task(queue=QueueName.ENCRYPTION, name="encrypt-decrypt")
async def encrypt_decrypt(ctx: JobContext, job: EncryptionJob) -> EncryptionResult:
    """Encrypt a stored message at rest, decrypt it, or rotate it to the active key.

    `decrypt` with `content` decrypts that envelope text instead of the stored message. Its
    result holds the plaintext, kept in Redis as long as results are (`keep_result`).
    """
    keys = await service(ctx, keyring)
    if job.operation == "decrypt" and job.content is not None:
        return await _decrypt(keys, job, Envelope.from_text(job.content))
    store = await service(ctx, message_store)
    # The crypto runs outside any transaction (SQLite's write lock would be held through it);
    # the write below is a compare-and-set on the key id read here.
    async with store.transaction() as session:
        message = await get_message(session, job.message_id)
    if message is None:
        raise MessageNotFound(f"message {job.message_id!r} is not in the store")
    current_key = message.key_id if message.encrypted else None
    if job.operation == "decrypt":
        if not message.encrypted:
            return _result(job, None, plaintext=message.content)
        return await _decrypt(keys, job, Envelope.from_text(message.content))
    if job.operation == "encrypt":
        if message.encrypted:  # done already (by a previous try, or at send time)
            return _result(job, message.key_id)
        sealed = await encrypt_async(keys, message.content, message_id=job.message_id)
    else:
        if not message.encrypted:
            raise PermanentError(f"message {job.message_id!r} is not encrypted: nothing to rotate")
        sealed = await rotate_async(
            keys, Envelope.from_text(message.content), message_id=job.message_id
        )
    changed = False
    if sealed.key_id != current_key:
        async with store.transaction() as session:
            changed = await store_sealed(
                session, job.message_id, sealed, expected_key_id=current_key
            )
    return _result(job, sealed.key_id, changed=changed)


async def _decrypt(keys: Keyring, job: EncryptionJob, envelope: Envelope) -> EncryptionResult:
    plaintext = await decrypt_async(keys, envelope, message_id=job.message_id)
    return _result(job, envelope.key_id, plaintext=plaintext.decode("utf-8"))


def _result(
    job: EncryptionJob, key_id: str | None, *, changed: bool = False, plaintext: str | None = None
) -> EncryptionResult:
    return EncryptionResult(
        message_id=job.message_id,
        operation=job.operation,
        key_id=key_id,
        changed=changed,
        plaintext=plaintext,
    )


@task(queue=QueueName.ENCRYPTION, name="rotate-keys")
async def rotate_keys(ctx: JobContext) -> RotationResult:
    """Re-encrypt every stored message under the active key, a page per transaction.

    Safe to repeat or to run beside new sends: each message is swapped only if it still holds
    the ciphertext that was read, and a rerun finds only what is left.
    """
    keys = await service(ctx, keyring)
    store = await service(ctx, message_store)
    rotated, after = 0, ""
    while True:
        async with store.transaction() as session:
            page = await encrypted_under_other_keys(
                session, keys.active_key_id, after=after, limit=ROTATION_PAGE
            )
        # Sealed outside the transaction; each write is a compare-and-set on the old key id.
        sealed = [
            await rotate_async(keys, Envelope.from_text(message.content), message_id=message.id)
            for message in page
        ]
        async with store.transaction() as session:
            for message, envelope in zip(page, sealed, strict=True):
                rotated += await store_sealed(
                    session, message.id, envelope, expected_key_id=message.key_id
                )
        if len(page) < ROTATION_PAGE:
            return RotationResult(rotated=rotated, active_key_id=keys.active_key_id)
        after = page[-1].id
        await ctx["progress"](step="rotating", data={"rotated": rotated})
