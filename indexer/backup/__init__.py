"""Consistent backups of an embedded node (catalog + serving stores) and their verified restore.

Contract: `snapshot.create_backup(services, destination)` while serving; `restore.restore_backup(path,
settings)` into a stopped node's data directory; both raise `BackupError` subclasses the CLI and API map."""
from indexer.backup.snapshot import BackupError, Manifest

__all__ = ["BackupError", "Manifest"]
