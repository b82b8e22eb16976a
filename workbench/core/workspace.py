"""Where things live: the workspace folder and its layout (see DESIGN.md, "Workspace")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "WORKBENCH_HOME"
DB_NAME = "workbench.db"


@dataclass(frozen=True)
class Workspace:
    home: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> "Workspace":
        """`--home DIR`, else `$WORKBENCH_HOME`, else the current directory."""
        chosen = home or os.environ.get(ENV_HOME) or os.getcwd()
        return cls(Path(chosen).expanduser().resolve())

    @property
    def db_path(self) -> Path:
        return self.home / DB_NAME

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def sessions_dir(self) -> Path:
        return self.home / "sessions"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / name

    def dataset_dir(self, name: str) -> Path:
        return self.data_dir / name

    def job_dir(self, job_id: int) -> Path:
        return self.jobs_dir / str(job_id)

    def create_folders(self) -> None:
        for folder in (self.home, self.models_dir, self.data_dir, self.jobs_dir, self.sessions_dir):
            folder.mkdir(parents=True, exist_ok=True)
