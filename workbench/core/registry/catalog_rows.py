"""The registry's catalogue tables: models (with their parent links and renames that carry evaluations
along) and datasets. Refuses to rename or remove a model that a queued or running job trains from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from ..errors import WorkbenchError
from .database import RegistryDatabase
from .records import DatasetRecord, ModelRecord


class CatalogRows(RegistryDatabase):
    """Rows of the models and datasets tables."""

    # ------------------------------------------------------------ models

    def add_model(self, record: ModelRecord) -> ModelRecord:
        try:
            with self.transaction() as db:
                db["models"].insert(self._row(record))
        except sqlite3.IntegrityError:
            raise WorkbenchError(f"a model named '{record.name}' is already registered") from None
        return record

    def get_model(self, name: str) -> ModelRecord:
        found = self.find_model(name)
        if found is None:
            raise WorkbenchError(f"unknown model '{name}' (see `workbench models list`)")
        return found

    def find_model(self, name: str) -> ModelRecord | None:
        rows = self._select(ModelRecord, "models", "name = ?", [name])
        return rows[0] if rows else None

    def list_models(self) -> list[ModelRecord]:
        return self._select(ModelRecord, "models", order_by="created_at, name")

    def update_model(self, name: str, **changes: Any) -> ModelRecord:
        record = self.get_model(name)
        for key, value in changes.items():
            setattr(record, key, value)
        with self.transaction() as db:
            db["models"].update(name, self._row(record))
        return record

    def rename_model(self, old: str, new: str, new_path: str,
                     move: Callable[[], Any] | None = None) -> ModelRecord:
        """Rename a model's rows. `move` (the folder rename) runs inside the write transaction after
        the checks, so of two renames at once exactly one moves the folder and the other is refused."""
        with self.transaction() as db:
            record = self.get_model(old)
            if self.find_model(new):
                raise WorkbenchError(f"a model named '{new}' is already registered")
            self._refuse_if_training_from(old, "rename")
            if move is not None:
                move()
            db.execute("UPDATE models SET name = ?, path = ? WHERE name = ?", [new, self._stored(new_path), old])
            db.execute("UPDATE models SET parent = ? WHERE parent = ?", [new, old])
            db.execute("UPDATE evaluations SET model = ? WHERE model = ?", [new, old])
        record.name, record.path = new, new_path
        return record

    def remove_model(self, name: str) -> None:
        with self.transaction() as db:
            self.get_model(name)
            self._refuse_if_training_from(name, "remove")
            db["models"].delete(name)

    def _refuse_if_training_from(self, name: str, action: str) -> None:
        busy = [row[0] for row in self.db.execute(
            "SELECT id FROM jobs WHERE base_model = ? AND status IN ('queued', 'running') ORDER BY id", [name])]
        if busy:
            raise WorkbenchError(f"cannot {action} '{name}': queued or running job(s) "
                                 f"{', '.join(map(str, busy))} train from it; cancel them or wait for them")

    def children_of(self, name: str) -> list[ModelRecord]:
        return self._select(ModelRecord, "models", "parent = ?", [name], order_by="created_at")

    # ------------------------------------------------------------ datasets

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        try:
            with self.transaction() as db:
                db["datasets"].insert(self._row(record))
        except sqlite3.IntegrityError:
            raise WorkbenchError(f"a dataset named '{record.name}' is already registered") from None
        return record

    def get_dataset(self, name: str) -> DatasetRecord:
        found = self.find_dataset(name)
        if found is None:
            raise WorkbenchError(f"unknown dataset '{name}' (see `workbench data list`)")
        return found

    def find_dataset(self, name: str) -> DatasetRecord | None:
        rows = self._select(DatasetRecord, "datasets", "name = ?", [name])
        return rows[0] if rows else None

    def list_datasets(self) -> list[DatasetRecord]:
        return self._select(DatasetRecord, "datasets", order_by="created_at, name")

    def remove_dataset(self, name: str) -> None:
        self.get_dataset(name)
        with self.transaction() as db:
            db["datasets"].delete(name)
