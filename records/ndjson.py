"""Reading FHIR NDJSON (the Bulk Data format `$export` writes: one resource per line) into records.

Nothing here touches the database. The checks are records.bundles', each naming the file and line it refuses,
in two stages:

1. `ndjson_index`, over every file before anything is stored: each line must be a resource the bundle path would
   take (size, UTF-8, depth, strict JSON, an object, Patient or Observation, no repeated id, a Patient with an
   identifier no other Patient has, an Observation whose subject.reference is "Patient/<id>" of a Patient in
   the files). One failure refuses the whole job. What is kept is where each line is, by patient: an export
   lists Observations by type, not by patient, and a record holds all of a patient's Observations of a category.
2. `ndjson_slice_records`, per slice of patients: the rest of the checks (category, code, FHIR validation,
   canonical form) on each patient's lines, and their records, built as the bundle path builds them. A patient
   with a refused line is refused whole (none of their records), and the others of the slice are kept.

Both stages run in forked processes when asked (`_in_processes`): stage 1 a part of a file each, with what spans
lines checked by the caller in the files' order; stage 2 a slice each, ahead of the caller storing the slice before.
"""

import hashlib
import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

from django.conf import settings

from health_platform.errors import ApplicationError
from records.bundles import (
    Location,
    ParsedRecord,
    RecordNotCanonicalizable,
    bundle_load_json,
    duplicate_ids,
    duplicate_patients,
    json_value,
    not_canonicalizable,
    observation_category,
    observation_code_check,
    observation_subject,
    patient_identifier_keys,
    record_parse,
    resource_type_check,
    resources_fhir_check,
)
from records.errors import BundleRejected, BundleTooLarge, IngestInterrupted

READ_CHUNK_BYTES = 1 << 20
INDEX_PART_BYTES = 4 << 20
ORPHAN_CHECK_SECONDS = 0.5


class LineAt(NamedTuple):
    """A line of one of the job's files: the file as it was named (`file`), its position among them, the line's
    number (from 1) and where it starts. A named tuple: one is made for every line, twice."""

    position: int
    line: int
    offset: int
    file: str

    def detail(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line}

    def reference(self) -> Any:
        return self.detail()


@dataclass(frozen=True)
class NdjsonFile:
    path: Path
    name: str
    sha256: str
    size: int
    parts: tuple[tuple[int, int, int], ...] = ()
    """The file cut at line starts into parts of about INDEX_PART_BYTES, each (start, end, its first line's
    number), read by stage 1 one part per task."""


@dataclass
class ExportIndex:
    """Where each line of the files is, by its number among all their lines (a line id, in the files' order), and
    each patient's Patient line and Observation lines, patients numbered in the files' order.

    Machine integers in arrays, not an object per line: about 30 bytes a line (a million breast-cancer patients'
    export, 31 million lines, about a gigabyte), and nothing the garbage collector has to walk while the slices
    are stored."""

    names: list[str]
    positions: array = field(default_factory=lambda: array("I"))
    numbers: array = field(default_factory=lambda: array("Q"))
    offsets: array = field(default_factory=lambda: array("Q"))
    patient_lines: array = field(default_factory=lambda: array("Q"))
    observation_lines: list[array] = field(default_factory=list)
    """Patient n's Observation lines, in the files' order."""

    @property
    def patient_count(self) -> int:
        return len(self.patient_lines)

    def line_at(self, line_id: int) -> LineAt:
        position = self.positions[line_id]
        return LineAt(
            position=position, line=self.numbers[line_id], offset=self.offsets[line_id], file=self.names[position]
        )

    def patient_at(self, number: int) -> LineAt:
        return self.line_at(self.patient_lines[number])


@dataclass(frozen=True)
class PatientRefusal:
    """A patient refused whole: the code, and where the first line refused is (the file by its position)."""

    code: str
    position: int
    line: int
    path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "file": self.position, "line": self.line, "path": self.path}


def ndjson_files(paths: list[str]) -> list[NdjsonFile]:
    """The files named, each with its SHA-256, size and parts (read in chunks, never whole)."""
    files = []
    for name in paths:
        path = Path(name)
        digest = hashlib.sha256()
        starts = [(0, 1)]  # (offset, number) of the line each part starts with
        offset = lines = 0
        with path.open("rb") as stream:
            while chunk := stream.read(READ_CHUNK_BYTES):
                digest.update(chunk)
                while (cut := chunk.find(b"\n", max(0, starts[-1][0] + INDEX_PART_BYTES - 1 - offset))) >= 0:
                    starts.append((offset + cut + 1, lines + chunk.count(b"\n", 0, cut + 1) + 1))
                lines += chunk.count(b"\n")
                offset += len(chunk)
        ends = [start for start, _number in starts[1:]] + [offset]
        parts = tuple((start, end, number) for (start, number), end in zip(starts, ends, strict=True) if start < end)
        files.append(NdjsonFile(path=path, name=name, sha256=digest.hexdigest(), size=offset, parts=parts))
    return files


def ndjson_index(files: list[NdjsonFile], *, processes: int = 0) -> ExportIndex:
    """Stage 1: check every line of `files` and index them by patient. Raises BundleRejected / BundleTooLarge
    naming the file and line (detail.file, detail.line).

    Each line's own checks (size, UTF-8, depth, JSON, type, a Patient's identifiers) run per part of a file
    (_part_lines), in `processes` forked processes (here when 0); what spans lines (repeated ids and identifiers,
    subjects) is checked here, on the parts' lines in the files' order, so the first line refused is the one a
    single pass over the files would refuse, and for the same reason."""
    index = ExportIndex(names=[ndjson.name for ndjson in files])
    seen_ids, seen_patients = duplicate_ids(index.line_at), duplicate_patients(index.line_at)
    references: dict[str, int] = {}
    unresolved: list[tuple[int, str | None]] = []  # Observations whose subject is not (yet) a Patient read
    observation_count = 0
    parts = [(position, *part) for position, ndjson in enumerate(files) for part in ndjson.parts]
    for (position, *_part), (lines, failure) in zip(
        parts, _in_processes(_part_lines, files, parts, processes), strict=True
    ):
        for number, offset, resource_type, resource_id, found in lines:
            line_id = len(index.offsets)
            index.positions.append(position)
            index.numbers.append(number)
            index.offsets.append(offset)
            if resource_id is not None:
                seen_ids.add([(resource_type, resource_id)], line_id)
            if isinstance(found, ApplicationError):  # refused after its id was read (a Patient's identifiers)
                raise found
            if resource_type == "Patient":
                seen_patients.add(found, line_id)
                if resource_id is not None:
                    references[f"Patient/{resource_id}"] = index.patient_count
                index.patient_lines.append(line_id)
                index.observation_lines.append(array("Q"))
                continue
            observation_count += 1
            patient = references.get(found) if found is not None else None
            if patient is None:
                unresolved.append((line_id, found))
            else:
                index.observation_lines[patient].append(line_id)
        if failure is not None:
            raise failure
    if not observation_count:
        raise BundleRejected("The files hold no Observation to record.", code="empty_bundle")
    # Refused (or filed) in the files' order, after every line was read, as the bundle path refuses its entries.
    late: set[int] = set()
    for line_id, reference in unresolved:
        subject = {"subject": {"reference": reference}} if reference is not None else {}
        patient = observation_subject(subject, index.line_at(line_id), references)
        index.observation_lines[patient].append(line_id)
        late.add(patient)
    for patient in late:
        index.observation_lines[patient] = array("Q", sorted(index.observation_lines[patient]))
    return index


PartLine = tuple[int, int, str, str | None, Any]


def _part_lines(files: list[NdjsonFile], part: tuple[int, int, int, int]) -> tuple[list[PartLine], Any]:
    """A part's lines, each checked on its own: (number, offset, resource type, id when a string, then a Patient's
    identifier keys, or the error refusing them, or an Observation's subject reference when a string); and the
    error that stopped the part at a line before its type was known (None when none did)."""
    position, start, end, first_number = part
    ndjson = files[position]
    lines: list[PartLine] = []
    with ndjson.path.open("rb") as stream:
        stream.seek(start)
        try:
            for number, offset, raw in _lines(stream, name=ndjson.name, number=first_number - 1, offset=start, end=end):
                at = LineAt(position=position, line=number, offset=offset, file=ndjson.name)
                resource = _resource(raw, at)
                resource_type = resource_type_check(resource, at)
                resource_id = resource.get("id")
                found: Any
                if resource_type == "Patient":
                    try:
                        found = patient_identifier_keys(resource, at)
                    except (BundleRejected, BundleTooLarge) as error:
                        found = error
                else:
                    subject = resource.get("subject")
                    reference = subject.get("reference") if isinstance(subject, dict) else None
                    found = reference if isinstance(reference, str) else None
                lines.append(
                    (number, offset, resource_type, resource_id if isinstance(resource_id, str) else None, found)
                )
                if isinstance(found, ApplicationError):
                    break
        except (BundleRejected, BundleTooLarge) as error:
            return lines, error
    return lines, None


def ndjson_slices_records(
    files: list[NdjsonFile], index: ExportIndex, slices: Sequence[range], *, processes: int
) -> Iterator[tuple[list[ParsedRecord], dict[int, PatientRefusal]]]:
    """Stage 2 for each of `slices` in turn (ndjson_slice_records), read by `processes` processes ahead of the
    caller while it stores the slice before (_in_processes)."""
    return _in_processes(_slice_records, (files, index), slices, processes)


def _slice_records(
    state: tuple[list[NdjsonFile], ExportIndex], patients: range
) -> tuple[list[ParsedRecord], dict[int, PatientRefusal]]:
    files, index = state
    return ndjson_slice_records(files, index, patients)


Task = TypeVar("Task")
State = TypeVar("State")
Result = TypeVar("Result")


def _in_processes(
    function: Callable[[State, Task], Result], state: State, tasks: Sequence[Task], processes: int
) -> Iterator[Result]:
    """function(state, task) for each of `tasks`, in order, computed by `processes` processes ahead of the caller:
    at most processes + 1 results are waiting to be taken. With no process, or one task, computed here.

    The processes are forked when the first result is asked for, so they share `state` (the files, the index)
    without copying it; they read files and return results, and touch nothing else (no database, no ledger). A
    file that no longer reads, or a process that dies, raises IngestInterrupted here when its task's turn comes."""
    try:
        if processes < 1 or len(tasks) <= 1:
            for task in tasks:
                yield function(state, task)
            return
        pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=get_context("fork"),
            initializer=_worker_ready,
            initargs=(function, state, os.getpid()),
        )
        try:
            ahead: deque[Future[Result]] = deque()
            for task in tasks:
                ahead.append(pool.submit(_worker_task, task))
                if len(ahead) > processes:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    except (OSError, BrokenProcessPool) as error:
        raise IngestInterrupted(detail={"error": type(error).__name__}) from error


_worker: dict[str, Any] = {}


def _worker_ready(function: Callable[[Any, Any], Any], state: Any, parent: int) -> None:
    _worker.update(function=function, state=state)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True, name="orphan-watch").start()


def _worker_task(task: Any) -> Any:
    return _worker["function"](_worker["state"], task)


def _exit_when_orphaned(parent: int) -> None:
    """A process whose command was killed (kill -9 leaves no one to shut the pool down) ends within a second: it
    holds both ends of the pool's pipes, so it would otherwise wait for work for ever."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)


def ndjson_slice_records(
    files: list[NdjsonFile], index: ExportIndex, patients: range
) -> tuple[list[ParsedRecord], dict[int, PatientRefusal]]:
    """Stage 2 for the patients numbered `patients` (their order in the index): their records, one per category,
    each ParsedRecord's patient_entry being its patient's number; and the patients refused, by number."""
    records: list[ParsedRecord] = []
    refused: dict[int, PatientRefusal] = {}
    streams = [ndjson.path.open("rb") for ndjson in files]
    try:
        for number in patients:
            try:
                records += _patient_records(streams, number, index)
            except (BundleRejected, BundleTooLarge) as error:
                refused[number] = _refusal(error, files, index.patient_at(number))
    finally:
        for stream in streams:
            stream.close()
    return records, refused


def _patient_records(streams: Sequence[BinaryIO], number: int, index: ExportIndex) -> list[ParsedRecord]:
    patient_at = index.patient_at(number)
    patient_text, patient = _read(streams, patient_at)
    located: list[tuple[Location, dict[str, Any]]] = [(patient_at, patient)]
    by_category: dict[str, list[tuple[bytes, dict[str, Any]]]] = {}
    for line_id in index.observation_lines[number]:
        at = index.line_at(line_id)
        text, observation = _read(streams, at)
        located.append((at, observation))
        category = observation_category(observation, at)
        observation_code_check(observation, at)
        by_category.setdefault(category, []).append((text, observation))
    resources_fhir_check(located)
    keys = tuple(patient_identifier_keys(patient, patient_at))
    try:
        return [
            record_parse(
                patient=patient,
                patient_keys=keys,
                category=category,
                observations=[observation for _text, observation in lines],
                patient_entry=number,
                texts=(patient_text, *(text for text, _observation in lines)),
            )
            for category, lines in sorted(by_category.items())
        ]
    except RecordNotCanonicalizable:
        raise not_canonicalizable(located) from None


def _lines(stream: BinaryIO, *, name: str, number: int, offset: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """Each line of `stream` from where it is (line `number` + 1, at `offset`) to `end`, without its line break: its
    number, where it starts, and its bytes; a line longer than INGEST_MAX_BYTES is refused (payload_too_large)
    before it is read whole. A last line break ends the file, adding no line."""
    limit = settings.INGEST_MAX_BYTES
    while offset < end and (raw := stream.readline(limit + 2)):
        number += 1
        line = raw[:-2] if raw.endswith(b"\r\n") else raw.removesuffix(b"\n")
        if len(line) > limit:
            raise BundleTooLarge(
                "A line is longer than the configured limit.",
                code="payload_too_large",
                detail={"file": name, "line": number, "max_bytes": limit},
            )
        yield number, offset, line
        offset += len(raw)


def _resource(raw: bytes, at: LineAt) -> dict[str, Any]:
    try:
        resource = bundle_load_json(raw)
    except (BundleRejected, BundleTooLarge) as error:
        raise type(error)(error.message, code=error.code, detail=_located(error, at)) from None
    if not isinstance(resource, dict):
        raise BundleRejected(
            "A line holds no resource.", code="fhir_invalid", detail={"errors": [{**at.detail(), "path": "resource"}]}
        )
    return resource


def _read(streams: Sequence[BinaryIO], at: LineAt) -> tuple[bytes, dict[str, Any]]:
    """The text of a line stage 1 read and checked in full (size, UTF-8, depth, strict JSON, no repeated key, an
    object), and its resource: parsed again as it is, by json_value alone, which gives the same value for it."""
    stream = streams[at.position]
    stream.seek(at.offset)
    text = stream.readline(settings.INGEST_MAX_BYTES + 2)
    resource: dict[str, Any] = json_value(text)
    return text, resource


def _refusal(error: ApplicationError, files: list[NdjsonFile], patient_at: LineAt) -> PatientRefusal:
    """The refusal of a patient for `error`: at the first line it names (the patient's line if none)."""
    detail = error.detail if isinstance(error.detail, dict) else {}
    errors = detail.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else detail
    names = [ndjson.name for ndjson in files]
    if first.get("file") in names and isinstance(first.get("line"), int):
        position, line = names.index(first["file"]), first["line"]
    else:
        position, line = patient_at.position, patient_at.line
    return PatientRefusal(code=error.code, position=position, line=line, path=str(first.get("path", "")))


def _located(error: ApplicationError, at: LineAt | None = None) -> dict[str, Any]:
    """The error's detail, naming `at` (the file and line) when it does not name one already."""
    detail = dict(error.detail) if isinstance(error.detail, dict) else {}
    if at is not None:
        detail = {**detail, **at.detail()}
    return detail
