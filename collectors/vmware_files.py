"""The disk files on vCenter's datastores, attached to a VM or not: what a storage leak is judged among.

One ``SearchDatastoreSubFolders_Task`` per accessible datastore, asking for VM disk files with their size (the
datastore browser; a read-only role may call it: it needs ``Datastore.Browse``). The search runs as a vCenter
task — a record in vCenter's task list, changing nothing — whose ``info`` is then read until it ends. A
datastore whose search fails, or that the searches' time (``files_timeout`` for all of them) leaves unread, is
left out and said in ``problems``; the rest of the scan stands. A search still running then is left to end on
its own (cancelling it would be a write).
"""

from __future__ import annotations

import re
import time
from typing import Any

from inventory.normalise import one_line

# VMware's own files beside a disk's descriptor: its extents and change tracking (not disks of their own)
EXTENT = re.compile(r"-(flat|delta|ctk|sesparse|rdm|rdmp)\.vmdk$", re.IGNORECASE)
DATASTORE_PATH = re.compile(r"^\[([^\]]*)\]/?(.*)$")
POLL_S = 0.05


def datastore_files(stub: Any, datastores: list[dict[str, Any]], timeout: float, calls: Any,
                    vim: Any) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Per datastore moid: its VM disk files (path as vSphere writes it, ``[ds] folder/file.vmdk``, and size); and
    per datastore not read, why. ``timeout`` is for all the searches together."""
    found: dict[str, list[dict[str, Any]]] = {}
    problems: dict[str, str] = {}
    spec = vim.host.DatastoreBrowser.SearchSpec(
        query=[vim.host.DatastoreBrowser.VmDiskQuery()], matchPattern=["*.vmdk"],
        details=vim.host.DatastoreBrowser.FileInfo.Details(fileSize=True, fileType=True))
    deadline = time.monotonic() + timeout
    for row in datastores:
        name, summary = row.get("name"), row.get("summary") or {}
        if not name or summary.get("accessible") is False:
            continue
        try:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not reached within files_timeout ({timeout:g} s for all datastores)")
            found[row["_moid"]] = _search(vim.Datastore(row["_moid"], stub), name, spec, deadline, calls)
        except Exception as exc:  # one datastore that cannot be searched is a problem, not a lost scan
            problems[row["_moid"]] = f"datastore {name}: its files not listed ({one_line(exc, 160)})"
    return found, problems


def _search(datastore: Any, name: str, spec: Any, deadline: float, calls: Any) -> list[dict[str, Any]]:
    task = datastore.browser.SearchDatastoreSubFolders_Task(datastorePath=f"[{name}]", searchSpec=spec)
    calls.add(2)
    pause = POLL_S
    while True:
        info = task.info
        calls.add()
        if info.state not in ("queued", "running"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the search did not end within files_timeout")
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    if info.state != "success":
        raise RuntimeError(getattr(info.error, "msg", None) or f"the search ended {info.state}")
    files = []
    for folder in info.result or []:
        for file in folder.file or []:
            if not EXTENT.search(file.path):
                files.append({"path": join(folder.folderPath, file.path),
                              "size": None if file.fileSize is None else int(file.fileSize)})
    return files


def join(folder: str, file: str) -> str:
    """A search result's folder (``[ds]``, ``[ds] dir``, ``[ds] dir/``; govmomi's simulator writes ``[ds]/dir``)
    and a file name: the path vSphere gives a VM's disk, ``[ds] dir/file.vmdk``."""
    matched = DATASTORE_PATH.match(folder.strip())
    if matched is None:
        return f"{folder.rstrip('/')}/{file}"
    inside = matched.group(2).strip().strip("/")
    return f"[{matched.group(1)}] {inside + '/' if inside else ''}{file}"
