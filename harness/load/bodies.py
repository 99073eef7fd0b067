"""Request bodies before the load: JSON templates filled from data set rows, and bodies made of files and form
fields (`body_binary`, `multipart`, `form`), each file read once and each body encoded once, as the bytes sent,
so that a request costs the load generator the same whatever made its body. Also which files a request reads,
for load generators that run elsewhere (`input_files`, `relocate`).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, urlencode

from urllib3.fields import RequestField
from urllib3.filepost import encode_multipart_formdata

from harness.config import PLACEHOLDER, FileInput, RequestConfig
from harness.errors import ConfigError

JSON_CONTENT_TYPE = "application/json"
MULTIPART_CONTENT_TYPE = "multipart/form-data"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# What a file whose name says nothing is sent as (RFC 2046's "arbitrary binary data").
UNKNOWN_FILE_TYPE = "application/octet-stream"
# Every prepared body is held in memory by every load generator process: past this a run would rather stop at
# preflight than be killed for lack of memory halfway.
MAX_PREPARED_BYTES = 2**30
# Python's own table, not the machine's /etc/mime.types: a guess must be the same in every process and pod, or
# the same body would have two keys for its answer alone.
_MIME_TYPES = mimetypes.MimeTypes()


@dataclass(frozen=True)
class Part:
    """A part of a multipart/form-data body or a field of a form: a file when it has a file name."""

    name: str
    content: bytes
    filename: str | None = None
    content_type: str | None = None


# --------------------------------------------------------------------------- rows and templates


def read_jsonl(path: Path, where: str) -> list[Any]:
    """The JSON documents of a JSON-lines file, one per non-empty line, or a ConfigError naming `where`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{where} '{path}': cannot read ({reason})") from error
    documents = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            documents.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where} '{path}' line {number}: not valid JSON ({error.msg})") from error
    if not documents:
        raise ConfigError(f"{where} '{path}': empty (expected one JSON document per line)")
    return documents


def folder_rows(folder: Path, where: str) -> list[dict[str, Any]]:
    """One row `{"file": path in the folder}` per file of a folder and its subfolders, in name order; hidden files
    and folders (a name starting with '.') are left out."""
    if not folder.is_dir():
        raise ConfigError(f"{where} '{folder}': not a folder (expected a folder of files to send)")
    found = []
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in names:
            path = Path(directory) / name
            if not name.startswith(".") and path.is_file():
                found.append(path.relative_to(folder).as_posix())
    if not found:
        raise ConfigError(f"{where} '{folder}': no files in it")
    return [{"file": file} for file in sorted(found)]


def request_rows(request: RequestConfig, where: str) -> list[dict[str, Any]] | None:
    """The rows a request's bodies are filled from (its data set's, or one per file of its `files` folder), each
    holding the columns its checks expect; None when it has neither."""
    if request.files is not None:
        return folder_rows(request.files, f"{where}.files")
    if request.dataset is None:
        return None
    rows = []
    for number, row in enumerate(read_jsonl(request.dataset, f"{where}.dataset"), start=1):
        if not isinstance(row, dict):
            raise ConfigError(f"{where}.dataset '{request.dataset}' line {number}: expected a JSON object (a row)")
        for check in request.check.fields:
            if check.expected_column is not None and check.expected_column not in row:
                raise ConfigError(
                    f"{where}.check: column '{check.expected_column}' is not in {where}.dataset line {number}"
                )
        rows.append(row)
    return rows


def fill_template(template: Any, row: Mapping[str, Any]) -> Any:
    """The template with every "{{column}}" filled from `row`: a string that is only a placeholder becomes the
    column's value (a list stays a list), a placeholder inside a longer string becomes text. KeyError names a
    missing column."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template)
        if whole:
            return row[whole.group(1).strip()]
        return PLACEHOLDER.sub(lambda match: as_text(row[match.group(1).strip()]), template)
    if isinstance(template, list):
        return [fill_template(item, row) for item in template]
    if isinstance(template, dict):
        return {key: fill_template(value, row) for key, value in template.items()}
    return template


def as_text(value: Any) -> str:
    """A row's value as it appears inside text (a form field, a file name): a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def missing_column(
    error: KeyError, field: str, request: RequestConfig, where: str, row: Mapping[str, Any], number: int
) -> ConfigError:
    """The error for a placeholder naming a column that row `number` of the request does not have."""
    source = f"the rows of {where}.files" if request.files is not None else f"{where}.dataset line {number}"
    return ConfigError(f"{where}.{field}: column {error} is not in {source} (it has: {', '.join(map(str, row))})")


# --------------------------------------------------------------------------- encodings


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value, without parameters, in lower case ('' for none)."""
    return (content_type or "").split(";")[0].strip().lower()


def boundary_of(content_type: str) -> str | None:
    """The boundary parameter of a multipart Content-Type, or None when it has none."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    return boundary if isinstance(boundary, str) else None


def request_boundary(name: str) -> str:
    """The multipart boundary of a request's bodies: the same in every process (an answer alone is found by the
    body's bytes), and, like the random ones HTTP clients choose, not expected in any file."""
    return "harness-" + hashlib.sha256(name.encode()).hexdigest()[:32]


def encode_multipart(parts: Sequence[Part], boundary: str) -> bytes:
    """A multipart/form-data body of `parts`, in order (urllib3's encoding, with the boundary given)."""
    fields = []
    for part in parts:
        field = RequestField(part.name, part.content, filename=part.filename)
        field.make_multipart(content_type=part.content_type)
        fields.append(field)
    body, _ = encode_multipart_formdata(fields, boundary=boundary)
    return body


def split_multipart(body: bytes, boundary: str) -> list[Part]:
    """The parts of a multipart/form-data body made with `boundary` (whose delimiter no part contains)."""
    parts = []
    for section in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if section.startswith(b"--"):
            break  # the close delimiter
        head, _, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = Message()
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            header, _, value = line.partition(":")
            headers[header.strip()] = value.strip()
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_param("filename", header="content-disposition")
        parts.append(
            Part(
                name=name if isinstance(name, str) else "",
                content=content.removesuffix(b"\r\n"),
                filename=filename if isinstance(filename, str) else None,
                content_type=headers.get("Content-Type"),
            )
        )
    return parts


def encode_form(parts: Sequence[Part]) -> bytes:
    """An application/x-www-form-urlencoded body of the parts' names and contents, in order."""
    return urlencode([(part.name, part.content) for part in parts]).encode("ascii")


def split_form(body: bytes) -> list[Part]:
    """The fields of an application/x-www-form-urlencoded body, in order (blank values kept)."""
    # Latin-1 maps every byte to one character and back: the values come back as the bytes that were encoded.
    pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return [Part(name.encode("latin-1").decode("utf-8", "replace"), value.encode("latin-1")) for name, value in pairs]


def guess_file_type(name: str) -> str:
    """The media type a file's name suggests, else application/octet-stream."""
    return _MIME_TYPES.guess_type(name, strict=False)[0] or UNKNOWN_FILE_TYPE


# --------------------------------------------------------------------------- file bodies


class _FileReader:
    """Each file read once, however many rows name it."""

    def __init__(self) -> None:
        self._contents: dict[Path, bytes] = {}

    def read(self, path: Path, where: str) -> bytes:
        content = self._contents.get(path)
        if content is None:
            try:
                content = self._contents[path] = path.read_bytes()
            except OSError as error:
                raise ConfigError(f"{where}: cannot read '{path}' ({error.strerror})") from error
        return content


def rows_folder(request: RequestConfig) -> Path | None:
    """The folder the paths a request's body names are relative to: its `files` folder, its data set's folder."""
    if request.files is not None:
        return request.files
    return None if request.dataset is None else request.dataset.parent


def _file_path(request: RequestConfig, file: FileInput, row: Mapping[str, Any]) -> Path:
    path = Path(as_text(fill_template(file.file, row)))
    folder = rows_folder(request)
    return path if folder is None else folder / path


def _row_parts(request: RequestConfig, row: Mapping[str, Any], reader: _FileReader, where: str) -> list[Part]:
    """The parts of one body: the file of body_binary, the parts of multipart, the fields of form."""
    if request.body_binary is not None:
        # Its file name is not sent: the path as the row names it is kept to say which file is which type.
        named = as_text(fill_template(request.body_binary.file, row))
        path = _file_path(request, request.body_binary, row)
        return [Part("", reader.read(path, f"{where}.body_binary"), named, request.body_binary.content_type)]
    parts = []
    for name, value in (request.multipart or request.form or {}).items():
        if not isinstance(value, FileInput):
            parts.append(Part(name, as_text(fill_template(str(value), row)).encode()))
            continue
        path = _file_path(request, value, row)
        filename = path.name if value.filename is None else as_text(fill_template(value.filename, row))
        content = reader.read(path, f"{where}.multipart.{name}")
        parts.append(Part(name, content, filename, value.content_type or guess_file_type(path.name)))
    return parts


def file_bodies(
    request: RequestConfig, rows: Sequence[Mapping[str, Any]] | None, where: str
) -> tuple[str, list[bytes]]:
    """The Content-Type and the bodies (one per row, or one without rows) of a request with body_binary, multipart
    or form: files read once, every body encoded now."""
    reader = _FileReader()
    boundary = request_boundary(request.name)
    content_types: dict[str, str] = {}
    bodies = []
    total_bytes = 0
    for number, row in enumerate(rows or [{}], start=1):
        try:
            parts = _row_parts(request, row, reader, where)
        except KeyError as error:
            raise missing_column(error, request.body_kinds[0], request, where, row, number) from None
        if request.body_binary is not None:
            (part,) = parts
            content_types.setdefault(part.content_type or guess_file_type(part.filename or ""), part.filename or "")
            body = part.content
        elif request.multipart is not None:
            body = encode_multipart(parts, boundary)
        else:
            body = encode_form(parts)
        total_bytes += len(body)
        if total_bytes > MAX_PREPARED_BYTES:
            raise ConfigError(
                f"{where}: its bodies add up to more than {MAX_PREPARED_BYTES >> 20} MiB by row {number}, which every "
                "load generator process holds in memory",
                hint="send fewer or smaller files",
            )
        bodies.append(body)
    if request.multipart is not None:
        return f"{MULTIPART_CONTENT_TYPE}; boundary={boundary}", bodies
    if request.form is not None:
        return FORM_CONTENT_TYPE, bodies
    if len(content_types) > 1:
        (first, first_file), (second, second_file) = list(content_types.items())[:2]
        raise ConfigError(
            f"{where}.body_binary: its files are of different types ({first_file}: {first}, {second_file}: {second}), "
            "and a request sends one Content-Type",
            hint="give body_binary.content_type, or one request per type",
        )
    return next(iter(content_types)), bodies


# --------------------------------------------------------------------------- delivery elsewhere


def input_files(request: RequestConfig) -> list[Path]:
    """Every file a request reads, once each, in order: its body file or data set, the files of its `files`
    folder, and every file its bodies name. A load generator elsewhere needs them all, laid out alike
    relative to one another (paths in rows are relative to their data set's folder)."""
    where = f"request '{request.name}'"
    found = [path for path in (request.body_file, request.dataset) if path is not None]
    if request.sends_files:
        for number, row in enumerate(request_rows(request, where) or [{}], start=1):
            for file in request.file_inputs():
                try:
                    found.append(_file_path(request, file, row))
                except KeyError as error:
                    raise missing_column(error, request.body_kinds[0], request, where, row, number) from None
    # Lexically normal ("a/../b" is "b"): laid out elsewhere, "a" need not exist.
    return list(dict.fromkeys(Path(os.path.normpath(path)) for path in found))


def needs_files(request: RequestConfig) -> bool:
    """Whether the request reads files besides its body file and data set (a files folder, files its body names)."""
    return request.files is not None or bool(request.file_inputs())


def input_layout(request: RequestConfig) -> tuple[Path, dict[Path, PurePosixPath]]:
    """The folder all of a request's `input_files` lie in, and each one's path relative to it: laid out alike
    under another folder, they are read there by `relocate(request, folder, other_folder)`."""
    files = input_files(request)
    root = Path(os.path.commonpath(files)) if files else Path("/")
    if len(files) == 1 or root in files:
        root = root.parent
    return root, {path: PurePosixPath(path.relative_to(root).as_posix()) for path in files}


def relocate(request: RequestConfig, old_root: Path, new_root: Path) -> RequestConfig:
    """The request reading every file from `new_root`, at its path relative to `old_root` (where a load generator
    elsewhere finds the copies of `input_files` laid out alike). Paths in a data set's rows, relative to its
    folder, move with it."""

    def moved(path: Path) -> Path:
        return new_root / PurePosixPath(path.relative_to(old_root).as_posix())

    update: dict[str, Any] = {
        name: moved(getattr(request, name)) for name in ("body_file", "dataset", "files") if getattr(request, name)
    }
    if rows_folder(request) is None:
        # Without rows the paths it names are the scenario's, absolute since load_scenario.
        if request.body_binary is not None:
            update["body_binary"] = request.body_binary.model_copy(
                update={"file": str(moved(Path(request.body_binary.file)))}
            )
        if request.multipart is not None:
            update["multipart"] = {
                name: part.model_copy(update={"file": str(moved(Path(part.file)))})
                if isinstance(part, FileInput)
                else part
                for name, part in request.multipart.items()
            }
    return request.model_copy(update=update)
