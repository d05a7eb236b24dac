"""The store's revisions, applied in order by `tasks.store.migrate`."""
