"""`workbench doctor [--repair]`: check the registry against the folders on disk, and mend it.

Checks: the registry opens and passes SQLite's integrity check; every model and dataset row has its
folder; every folder under models/ and data/ has its row; no staging or half-deleted folders are left
by a crash. With repair: a damaged registry is set aside (workbench.db.damaged-<time>) and rebuilt; rows
whose folder is gone are dropped; folders without rows are registered again (a model folder carries its
config and weights, a dataset folder its meta.json); leftovers of dead processes are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import WorkbenchError
from .registry import DatasetRecord, Registry
from .staging import STAGING_MARK, process_alive, staging_pid
from .workspace import Workspace


@dataclass
class Finding:
    kind: str  # registry | integrity | row-without-folder | folder-without-row | leftover
    subject: str
    detail: str
    repaired: bool = False

    def line(self) -> str:
        mark = "repaired" if self.repaired else "problem"
        return f"{mark:<8}  {self.kind}: {self.subject}: {self.detail}"


def run_doctor(home: str | os.PathLike | None = None, repair: bool = False) -> list[Finding]:
    ws = Workspace.resolve(home)
    if not ws.home.is_dir():
        raise WorkbenchError(f"{ws.home} is not a workspace folder")
    findings: list[Finding] = []
    registry = _open_registry(ws, findings, repair)
    if registry is None:  # damaged, not repaired: the folders are all we can look at
        findings += _leftovers(ws, repair=False)
        return findings
    try:
        if not findings:
            _integrity(ws, registry, findings, repair)
            if findings and findings[-1].repaired:
                registry.close()
                registry = Registry(ws.db_path)
        findings += _rows_without_folders(registry, repair)
        findings += _leftovers(ws, repair)
        findings += _folders_without_rows(ws, registry, repair)
    finally:
        registry.close()
    return findings


def _open_registry(ws: Workspace, findings: list[Finding], repair: bool) -> Registry | None:
    try:
        return Registry(ws.db_path)
    except WorkbenchError as error:
        finding = Finding("registry", str(ws.db_path), str(error).split(";")[0])
        findings.append(finding)
        if not repair:
            return None
    aside = _set_aside(ws.db_path)
    finding.repaired = True
    finding.detail += f"; set aside as {aside.name} and rebuilt from the folders"
    return Registry(ws.db_path)


def _set_aside(db: Path) -> Path:
    aside = db.with_name(f"{db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    db.rename(aside)
    for suffix in ("-wal", "-shm"):
        extra = Path(f"{db}{suffix}")
        if extra.exists():
            extra.rename(Path(f"{aside}{suffix}"))
    return aside


def _integrity(ws: Workspace, registry: Registry, findings: list[Finding], repair: bool) -> None:
    try:
        result = [row[0] for row in registry.db.execute("PRAGMA integrity_check").fetchall()]
    except Exception as error:  # noqa: BLE001 - a damaged page can fail the check itself
        result = [str(error)]
    if result == ["ok"]:
        return
    finding = Finding("integrity", str(ws.db_path), "; ".join(result[:3]))
    findings.append(finding)
    if repair:
        registry.close()
        aside = _set_aside(ws.db_path)
        finding.repaired = True
        finding.detail += f"; set aside as {aside.name} and rebuilt from the folders"


def _rows_without_folders(registry: Registry, repair: bool) -> list[Finding]:
    found = []
    for record in registry.list_models():
        if not Path(record.path).is_dir():
            finding = Finding("row-without-folder", f"model '{record.name}'", f"{record.path} is missing")
            if repair and not registry.children_of(record.name):
                with registry.transaction() as db:
                    db["models"].delete(record.name)
                finding.repaired, finding.detail = True, finding.detail + "; row removed"
            found.append(finding)
    for record in registry.list_datasets():
        if not Path(record.path).is_dir():
            finding = Finding("row-without-folder", f"dataset '{record.name}'", f"{record.path} is missing")
            if repair:
                registry.remove_dataset(record.name)
                finding.repaired, finding.detail = True, finding.detail + "; row removed"
            found.append(finding)
    return found


def _leftovers(ws: Workspace, repair: bool) -> list[Finding]:
    """Staging folders of dead processes and folders renamed aside for deletion."""
    found = []
    for parent in (ws.models_dir, ws.data_dir):
        if not parent.is_dir():
            continue
        for folder in sorted(parent.iterdir()):
            pid = staging_pid(folder.name)
            deleting = ".deleting-" in folder.name
            if not (deleting or STAGING_MARK in folder.name) or (pid and process_alive(pid)):
                continue
            finding = Finding("leftover", str(folder), "left by a process that ended mid-write or mid-delete")
            if repair:
                shutil.rmtree(folder)
                finding.repaired, finding.detail = True, finding.detail + "; removed"
            found.append(finding)
    return found


def _folders_without_rows(ws: Workspace, registry: Registry, repair: bool) -> list[Finding]:
    found = []
    known = {Path(m.path).resolve() for m in registry.list_models()}
    # Base models before adapters, so an adapter's parent is registered when it is.
    folders = [f for f in _visible_folders(ws.models_dir) if f.resolve() not in known]
    for folder in sorted(folders, key=lambda f: (f / "adapter_config.json").exists()):
        finding = Finding("folder-without-row", f"model folder {folder}", "not registered")
        if repair:
            _repair(finding, lambda: _register_model(registry, folder))
        found.append(finding)
    known = {Path(d.path).resolve() for d in registry.list_datasets()}
    for folder in _visible_folders(ws.data_dir):
        if folder.resolve() in known:
            continue
        finding = Finding("folder-without-row", f"dataset folder {folder}", "not registered")
        if repair:
            _repair(finding, lambda: _register_dataset(registry, folder))
        found.append(finding)
    return found


def _visible_folders(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def _repair(finding: Finding, action) -> None:
    try:
        action()
    except WorkbenchError as error:
        finding.detail += f"; cannot register it: {error}"
        return
    finding.repaired, finding.detail = True, finding.detail + "; registered again"


def _register_model(registry: Registry, folder: Path) -> None:
    from .models import register_folder

    parent = None
    adapter_config = folder / "adapter_config.json"
    if adapter_config.exists():
        base = json.loads(adapter_config.read_text()).get("base_model_name_or_path") or ""
        candidate = Path(base).name
        parent = candidate if candidate and registry.find_model(candidate) else None
        if parent is None:
            raise WorkbenchError(f"an adapter whose base model ({base or 'unknown'}) is not registered")
    register_folder(registry, folder.name, folder, source="imported", parent=parent,
                    meta={"recovered_by": "workbench doctor"})


def _register_dataset(registry: Registry, folder: Path) -> None:
    from .data import META_FILE

    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WorkbenchError(f"no readable {META_FILE} ({error})") from None
    names = {f.name for f in fields(DatasetRecord)}
    values = {k: v for k, v in meta.items() if k in names}
    values.update(name=folder.name, path=str(folder))
    try:
        registry.add_dataset(DatasetRecord(**values))
    except TypeError as error:
        raise WorkbenchError(f"{META_FILE} lacks fields ({error})") from None


def as_data(findings: list[Finding]) -> dict:
    problems = [f for f in findings if not f.repaired]
    return {"healthy": not problems, "findings": [asdict(f) for f in findings]}
