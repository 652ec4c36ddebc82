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
"""

import hashlib
import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO

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
ORPHAN_CHECK_SECONDS = 0.5


@dataclass(frozen=True, order=True)
class LineAt:
    """A line of one of the job's files: the file as it was named (`file`), its position among them, the line's
    number (from 1) and where it starts."""

    position: int
    line: int
    offset: int = field(compare=False)
    file: str = field(compare=False)

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


@dataclass
class ExportIndex:
    """Where each line of the files is, by its number among all their lines (a line id, in the files' order), and
    each patient's Patient line and Observation lines, patients numbered in the files' order.

    Machine integers in arrays, not an object per line: the index of a million patients' export is a few hundred
    megabytes, and holds nothing the garbage collector has to walk while the slices are stored."""

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
    """The files named, each with its SHA-256 and size (read in chunks, never whole)."""
    files = []
    for name in paths:
        path = Path(name)
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(READ_CHUNK_BYTES):
                digest.update(chunk)
        files.append(NdjsonFile(path=path, name=name, sha256=digest.hexdigest(), size=path.stat().st_size))
    return files


def ndjson_index(files: list[NdjsonFile]) -> ExportIndex:
    """Stage 1: check every line of `files` and index them by patient. Raises BundleRejected / BundleTooLarge
    naming the file and line (detail.file, detail.line)."""
    index = ExportIndex(names=[ndjson.name for ndjson in files])
    seen_ids, seen_patients = duplicate_ids(index.line_at), duplicate_patients(index.line_at)
    references: dict[str, int] = {}
    unresolved: list[tuple[int, str | None]] = []  # Observations whose subject is not (yet) a Patient read
    observation_count = 0
    for position, ndjson in enumerate(files):
        with ndjson.path.open("rb") as stream:
            for number, offset, raw in _lines(stream, name=ndjson.name):
                line_id = len(index.offsets)
                index.positions.append(position)
                index.numbers.append(number)
                index.offsets.append(offset)
                at = index.line_at(line_id)  # for the errors: the index keeps the line's id, not this
                resource = _resource(raw, at)
                resource_type = resource_type_check(resource, at)
                resource_id = resource.get("id")
                if isinstance(resource_id, str):
                    seen_ids.add([(resource_type, resource_id)], line_id)
                if resource_type == "Patient":
                    seen_patients.add(patient_identifier_keys(resource, at), line_id)
                    if isinstance(resource_id, str):
                        references[f"Patient/{resource_id}"] = index.patient_count
                    index.patient_lines.append(line_id)
                    index.observation_lines.append(array("Q"))
                    continue
                observation_count += 1
                subject = resource.get("subject")
                reference = subject.get("reference") if isinstance(subject, dict) else None
                patient = references.get(reference) if isinstance(reference, str) else None
                if patient is None:
                    unresolved.append((line_id, reference if isinstance(reference, str) else None))
                else:
                    index.observation_lines[patient].append(line_id)
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


def ndjson_slices_records(
    files: list[NdjsonFile], index: ExportIndex, slices: Sequence[range], *, processes: int
) -> Iterator[tuple[list[ParsedRecord], dict[int, PatientRefusal]]]:
    """Stage 2 for each of `slices` in turn (ndjson_slice_records), read by `processes` worker processes ahead of
    the caller while it stores the slice before: at most processes + 1 slices are read and not yet taken.

    The workers are forked once the index is built, so they share it without copying; they read the files and
    return records, and touch nothing else (no database, no ledger). With no process, or one slice, the slices
    are read here. A file that no longer reads, or a worker that dies, raises IngestInterrupted here when its
    slice's turn comes: the slices before it are stored, and a run again resumes."""
    try:
        if processes < 1 or len(slices) <= 1:
            for patients in slices:
                yield ndjson_slice_records(files, index, patients)
            return
        pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=get_context("fork"),
            initializer=_worker_ready,
            initargs=(files, index, os.getpid()),
        )
        try:
            ahead: deque[Future[tuple[list[ParsedRecord], dict[int, PatientRefusal]]]] = deque()
            for patients in slices:
                ahead.append(pool.submit(_worker_slice_records, patients))
                if len(ahead) > processes:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    except (OSError, BrokenProcessPool) as error:
        raise IngestInterrupted(detail={"error": type(error).__name__}) from error


_worker_files: list[NdjsonFile] = []
_worker_index = ExportIndex(names=[])


def _worker_ready(files: list[NdjsonFile], index: ExportIndex, parent: int) -> None:
    global _worker_files, _worker_index
    _worker_files, _worker_index = files, index
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True, name="orphan-watch").start()


def _exit_when_orphaned(parent: int) -> None:
    """A reader whose command was killed (kill -9 leaves no one to shut the pool down) ends within a second: it
    holds both ends of the pool's pipes, so it would otherwise wait for work for ever."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)


def _worker_slice_records(patients: range) -> tuple[list[ParsedRecord], dict[int, PatientRefusal]]:
    return ndjson_slice_records(_worker_files, _worker_index, patients)


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


def _lines(stream: BinaryIO, *, name: str) -> Iterator[tuple[int, int, bytes]]:
    """Each line of `stream` (without its line break): its number (from 1), where it starts, and its bytes; a line
    longer than INGEST_MAX_BYTES is refused (payload_too_large) before it is read whole. A last line break ends the
    file, adding no line."""
    limit = settings.INGEST_MAX_BYTES
    offset = 0
    number = 0
    while raw := stream.readline(limit + 2):
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
