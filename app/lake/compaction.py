"""Compaction of a lake table: its small data files rewritten into files of about a target size, and old
snapshots expired (pyiceberg 0.12 has no rewrite_data_files, so this is built from an overwrite).

Every data file the exporter writes holds the rows of one loaded file (one file id), so a run of small
files is the rows of a range of file ids. A group's rows are read (a scan filtered on that range) and
written back by one `overwrite` filtered on the same range, in one Iceberg transaction: a reader sees the
snapshot before or the one after, the same rows either way, never a gap or a double. The exporter's lock
is held meanwhile, so no export commits in between, and the exactly-once check still works afterwards:
the file id stays a column of every row.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyiceberg.table import Table

TARGET_FILE_BYTES = 128 * 1024 * 1024
SMALL_FILE_SHARE = 0.5  # files under half the target are rewritten


@dataclass(frozen=True, slots=True)
class Compacted:
    groups: int  # overwrites committed
    files_before: int  # data files in the rewritten groups
    files_after: int
    rows: int
    snapshots_expired: int


@dataclass(frozen=True, slots=True)
class _DataFile:
    size: int
    first_file_id: int
    last_file_id: int


def _small_groups(files: list[_DataFile], target: int) -> list[tuple[int, int, int]]:
    """(first file id, last file id, data files) ranges of small files, each up to `target` bytes; a range
    never holds a large file (one whose file id range overlaps it ends the group)."""
    limit = target * SMALL_FILE_SHARE
    large = [(f.first_file_id, f.last_file_id) for f in files if f.size >= limit]

    def small(data_file: _DataFile) -> bool:
        # A small file sharing a file id with a large one stays: its range would take the large one along.
        return data_file.size < limit and not any(
            first <= data_file.last_file_id and data_file.first_file_id <= last for first, last in large
        )

    groups: list[tuple[int, int, int]] = []
    start = end = count = size = 0
    for data_file in sorted(files, key=lambda f: (f.first_file_id, f.last_file_id)):
        is_small = small(data_file)
        fits = count and is_small and size + data_file.size <= target and data_file.first_file_id >= end
        if fits:
            end, count, size = data_file.last_file_id, count + 1, size + data_file.size
            continue
        if count > 1:
            groups.append((start, end, count))
        count = 0
        if is_small:
            start, end, count, size = data_file.first_file_id, data_file.last_file_id, 1, data_file.size
    if count > 1:
        groups.append((start, end, count))
    return groups


def _data_files(table: Table) -> list[_DataFile]:
    listed = table.inspect.files().select(["file_size_in_bytes", "readable_metrics"]).to_pylist()
    return [
        _DataFile(
            row["file_size_in_bytes"],
            row["readable_metrics"]["file_id"]["lower_bound"],
            row["readable_metrics"]["file_id"]["upper_bound"],
        )
        for row in listed
    ]


def compact(table: Table, *, target_bytes: int = TARGET_FILE_BYTES, retain: timedelta) -> Compacted:
    """Rewrite the table's small data files in groups of up to `target_bytes`, then expire the snapshots
    older than `retain` (the current one is always kept)."""
    groups = _small_groups(_data_files(table), target_bytes) if table.current_snapshot() else []
    rows = files_before = 0
    for first, last, count in groups:
        in_range = f"file_id >= {int(first)} and file_id <= {int(last)}"
        data = table.scan(row_filter=in_range).to_arrow()
        with table.transaction() as transaction:
            transaction.overwrite(data, overwrite_filter=in_range, snapshot_properties={"compacted": "true"})
        rows, files_before = rows + data.num_rows, files_before + count
    files_after = 0
    if groups:
        table.refresh()
        bounds = [(first, last) for first, last, _ in groups]
        files_after = sum(
            1
            for f in _data_files(table)
            if any(a <= f.first_file_id and f.last_file_id <= b for a, b in bounds)
        )
    before = len(table.metadata.snapshots)
    table.maintenance.expire_snapshots().older_than(datetime.now(UTC) - retain).commit()
    table.refresh()
    return Compacted(len(groups), files_before, files_after, rows, before - len(table.metadata.snapshots))
