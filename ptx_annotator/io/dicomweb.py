"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) as a study source: URLs, authentication, one connection.

A study on a PACS is named by its DICOMweb URL::

    http(s)://HOST[:PORT]/PREFIX/dicom-web/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]

The part before ``/studies/`` is the server. Credentials come from ``PTX_DICOMWEB_AUTH``
(``USER:PASSWORD`` for HTTP basic, ``Bearer TOKEN`` for a bearer token) or an explicit option;
they are held only in the HTTP session and never printed, logged or written anywhere.

Searches, metadata, SEG retrieval and STOW-RS go through ``dicomweb-client``. A CT series is
retrieved with one streamed WADO-RS request whose multipart parts are written to disk as they
arrive, unparsed (:meth:`Connection.iter_series_parts`): parsing every slice with pydicom and
writing it again costs more than the transfer itself (see ``benchmarks/dicomweb_open.py``).
Every failure becomes a :class:`DicomWebError` whose one line names the server and the study.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ptx_annotator.errors import StudyError

AUTH_ENV = "PTX_DICOMWEB_AUTH"
CACHE_ENV = "PTX_CACHE_DIR"
STORE_ENV = "PTX_STORE_DIR"
#: Seconds to wait for the server to connect and to send each chunk.
TIMEOUT_S = (10, 120)
_STUDY_URL = re.compile(r"^(?P<server>https?://[^?#]+?)/studies/(?P<study>[0-9.]+)"
                        r"(?:/series/(?P<series>[0-9.]+))?/?$", re.IGNORECASE)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_TAG = {"study": "0020000D", "series": "0020000E", "sop": "00080018", "modality": "00080060",
        "description": "0008103E", "study_description": "00081030", "count": "00201209",
        "accession": "00080050", "date": "00080020", "number": "00200013", "creator": "00700084",
        "content_description": "00700081", "orientation": "00200037"}


class DicomWebError(StudyError):
    """A DICOMweb server could not give (or take) what was asked; the message names server and study."""


class StudyNotOnServer(DicomWebError):
    """The server answers, but has no such study (or the study holds no series)."""


def is_dicomweb_url(text) -> bool:
    """True for an ``http://`` or ``https://`` address (local paths never start so)."""
    return isinstance(text, str) and text.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class StudyRef:
    """A study (and optionally one series) on a DICOMweb server."""

    server: str
    study_uid: str
    series_uid: str | None = None

    @property
    def url(self) -> str:
        tail = f"/series/{self.series_uid}" if self.series_uid else ""
        return f"{self.server}/studies/{self.study_uid}{tail}"

    def where(self) -> str:
        """'server S, study U' for messages."""
        return f"DICOMweb server {self.server}, study {self.study_uid}"


def _refuse_credentials_in(text: str) -> None:
    """A URL with ``user:password@`` would put the password into every message and folder name."""
    authority = text.split("://", 1)[-1].split("/", 1)[0]
    if "@" in authority:
        host = authority.rsplit("@", 1)[1]
        raise DicomWebError(f"The DICOMweb URL for {host} carries credentials: remove them from the URL and set "
                            f"{AUTH_ENV} to USER:PASSWORD (or 'Bearer TOKEN') instead.")


def parse_study_url(text: str) -> StudyRef:
    """The :class:`StudyRef` of a study URL, or a one-line error saying what a study URL looks like."""
    _refuse_credentials_in(text)
    match = _STUDY_URL.match(text.strip())
    if not match:
        raise DicomWebError(f"'{text}' is not a DICOMweb study URL: give http(s)://HOST/.../dicom-web/studies/"
                            "<StudyInstanceUID> (a server URL alone lists studies: 'ptx-annotate worklist URL').")
    return StudyRef(match["server"].rstrip("/"), match["study"], match["series"])


def parse_server_url(text: str) -> str:
    """The server part of a server or study URL (no trailing slash, no ``/studies/...``)."""
    if not is_dicomweb_url(text):
        raise DicomWebError(f"'{text}' is not a DICOMweb server URL: give http(s)://HOST[:PORT]/.../dicom-web.")
    _refuse_credentials_in(text)
    match = _STUDY_URL.match(text.strip())
    return match["server"].rstrip("/") if match else text.strip().rstrip("/")


def server_key(server: str) -> str:
    """A folder name for a server: readable host/port/path plus a short hash of the exact URL."""
    readable = _SAFE.sub("_", server.split("://", 1)[-1]).strip("._-")[:80]
    return f"{readable}-{hashlib.sha256(server.encode()).hexdigest()[:8]}"


def cache_root() -> Path:
    """``$PTX_CACHE_DIR`` or ``~/.cache/ptx-annotator``: retrieved instances (safe to delete)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ptx-annotator") / "dicomweb"


def default_store_dir(server: str) -> Path:
    """The annotation store of a server's studies: ``$PTX_STORE_DIR/<server>`` or
    ``~/.local/share/ptx-annotator/stores/<server>`` (never on the server, never in the cache)."""
    base = os.environ.get(STORE_ENV) or Path.home() / ".local" / "share" / "ptx-annotator" / "stores"
    return Path(base) / server_key(server)


def auth_headers(auth: str | None = None) -> tuple[tuple[str, str] | None, dict]:
    """(basic credentials, extra headers) from ``auth`` or ``$PTX_DICOMWEB_AUTH``; both empty when unset."""
    text = (auth if auth is not None else os.environ.get(AUTH_ENV, "")).strip()
    if not text:
        return None, {}
    if text.lower().startswith("bearer "):
        token = text[7:].strip()
        if not token:
            raise DicomWebError(f"{AUTH_ENV} says 'Bearer' but gives no token: use 'Bearer TOKEN'.")
        return None, {"Authorization": f"Bearer {token}"}
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise DicomWebError(f"DICOMweb credentials must look like USER:PASSWORD or 'Bearer TOKEN' "
                            f"(from --auth or {AUTH_ENV}).")
    return (user, password), {}


def _value(item: dict, name: str, default=None):
    values = (item.get(_TAG[name]) or {}).get("Value") or []
    if not values:
        return default
    value = values[0]
    if isinstance(value, dict):  # person name
        return value.get("Alphabetic", default)
    return value


class Connection:
    """One authenticated session with a DICOMweb server; ``what`` names the study in messages."""

    def __init__(self, server: str, auth: str | None = None, what: str | None = None):
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.server = server.rstrip("/")
        self.what = what
        basic, headers = auth_headers(auth)
        self.session = requests.Session()
        self.session.auth = basic
        self.session.headers.update(headers)
        self.client = DICOMwebClient(self.server, session=self.session, timeout=TIMEOUT_S)
        self.client.set_http_retry_params(retry=False)

    def where(self, study_uid: str | None = None) -> str:
        study = study_uid or self.what
        return f"DICOMweb server {self.server}" + (f", study {study}" if study else "")

    @contextmanager
    def errors(self, doing: str, study_uid: str | None = None):
        """Turn network, TLS, HTTP and decoding failures into one-line :class:`DicomWebError`s."""
        import requests

        where = self.where(study_uid)
        try:
            yield
        except DicomWebError:
            raise
        except requests.exceptions.SSLError as exc:
            raise DicomWebError(f"{where}: TLS failed while {doing} ({_first_line(exc)}); check the certificate "
                                "or the URL's scheme.") from None
        except requests.exceptions.ConnectionError as exc:
            raise DicomWebError(f"{where}: cannot reach the server while {doing} ({_reason(exc)}); check the URL "
                                "and that the server runs.") from None
        except requests.exceptions.Timeout:
            raise DicomWebError(f"{where}: the server did not answer in time while {doing}.") from None
        except requests.exceptions.HTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status in (401, 403):
                raise DicomWebError(f"{where}: the server refused the credentials (HTTP {status}) while {doing}; "
                                    f"set {AUTH_ENV} to USER:PASSWORD or 'Bearer TOKEN'.") from None
            if status == 404:
                raise DicomWebError(f"{where}: not found on the server (HTTP 404) while {doing}; check the "
                                    "StudyInstanceUID.") from None
            raise DicomWebError(f"{where}: HTTP {status} while {doing}.") from None
        except requests.exceptions.RequestException as exc:
            raise DicomWebError(f"{where}: {type(exc).__name__} while {doing} ({_first_line(exc)}).") from None
        except (ValueError, KeyError) as exc:  # malformed JSON or multipart answers
            raise DicomWebError(f"{where}: the server's answer could not be read while {doing} "
                                f"({_first_line(exc)}).") from None

    # -- QIDO-RS --------------------------------------------------------------------------
    def studies(self) -> list[dict]:
        """Every study on the server: uid, accession, date, description (no patient attributes)."""
        with self.errors("searching studies"):
            found = self.client.search_for_studies(fields=["StudyDescription"], get_remaining=True)
        return [{"study_uid": _value(s, "study"), "accession": _value(s, "accession", ""),
                 "date": _value(s, "date", ""), "description": _value(s, "study_description", "")} for s in found]

    def series(self, study_uid: str) -> list[dict]:
        """The series of a study: uid, modality, description, number of instances."""
        with self.errors("searching the study's series", study_uid):
            found = self.client.search_for_series(study_uid, fields=["NumberOfSeriesRelatedInstances"])
        if not found:
            raise StudyNotOnServer(f"{self.where(study_uid)}: no such study on the server (or it holds no series); "
                                "check the StudyInstanceUID.")
        return [{"series_uid": _value(s, "series"), "modality": _value(s, "modality", ""),
                 "description": _value(s, "description", ""), "instances": int(_value(s, "count", 0) or 0)}
                for s in found]

    def instances(self, study_uid: str, series_uid: str) -> list[dict]:
        """The instances of a series: SOPInstanceUID and InstanceNumber."""
        with self.errors("searching the series' instances", study_uid):
            found = self.client.search_for_instances(study_uid, series_uid, fields=["InstanceNumber"])
        return [{"sop_uid": _value(i, "sop"), "number": int(_value(i, "number", 0) or 0)} for i in found]

    def instance_metadata(self, study_uid: str, series_uid: str, sop_uid: str) -> dict:
        """A few attributes of one instance from its WADO-RS metadata."""
        with self.errors("reading instance metadata", study_uid):
            item = self.client.retrieve_instance_metadata(study_uid, series_uid, sop_uid)
        return {"creator": _value(item, "creator"), "content_description": _value(item, "content_description", ""),
                "description": _value(item, "description", ""), "number": int(_value(item, "number", 0) or 0),
                "orientation": ((item.get(_TAG["orientation"]) or {}).get("Value"))}

    # -- WADO-RS --------------------------------------------------------------------------
    def instance_bytes(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """One instance as a DICOM file, exactly as stored."""
        parts = list(self._multipart(f"{self.server}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
                                     study_uid, "retrieving an instance"))
        if len(parts) != 1:
            raise DicomWebError(f"{self.where(study_uid)}: expected one instance {sop_uid}, got {len(parts)} parts.")
        return parts[0]

    def iter_series_parts(self, study_uid: str, series_uid: str):
        """Yield each instance of a series as DICOM file bytes, as stored, while they arrive."""
        yield from self._multipart(f"{self.server}/studies/{study_uid}/series/{series_uid}", study_uid,
                                   "retrieving the series")

    def _multipart(self, url: str, study_uid: str, doing: str):
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        with self.errors(doing, study_uid):
            response = self.session.get(url, headers={"Accept": accept}, stream=True, timeout=TIMEOUT_S)
            response.raise_for_status()
            with response:
                yield from split_multipart(response.headers.get("Content-Type", ""),
                                           response.iter_content(chunk_size=1 << 20))

    # -- STOW-RS --------------------------------------------------------------------------
    def store(self, dataset, study_uid: str) -> None:
        """Store one pydicom dataset (STOW-RS); a refusal by the server is an error."""
        with self.errors("storing the SEG", study_uid):
            answer = self.client.store_instances([dataset], study_instance_uid=study_uid)
        failed = answer.get("00081198") if answer is not None else None
        if failed:
            raise DicomWebError(f"{self.where(study_uid)}: the server refused to store the SEG.")

    def delete_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        """Delete one instance if the server allows DICOMweb DELETE; False when it does not."""
        url = f"{self.server}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        with self.errors("deleting a superseded SEG", study_uid):
            response = self.session.delete(url, timeout=TIMEOUT_S)
        return response.status_code in (200, 202, 204)


def split_multipart(content_type: str, chunks):
    """Yield the bodies of a ``multipart/related`` stream; raise if it ends before its closing boundary."""
    boundary = None
    for field in content_type.split(";")[1:]:
        name, _, value = field.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"').encode()
    if not content_type.lower().startswith("multipart/related") or not boundary:
        raise ValueError(f"expected a multipart/related answer, got '{content_type or 'no content type'}'")
    delimiter = b"\r\n--" + boundary
    buffer = bytearray(b"\r\n")  # so the first boundary is found like the others
    consumed = 0  # bytes of ``buffer`` already handed out
    started = closed = False
    for chunk in chunks:
        search_from = max(consumed, len(buffer) - len(delimiter) - 2)  # a boundary may straddle chunks
        buffer += chunk
        while not closed:
            at = buffer.find(delimiter, search_from)
            end = at + len(delimiter)
            if at < 0 or len(buffer) < end + 2:  # no boundary yet, or too little to tell a closing one
                break
            if started:
                yield _part_body(buffer, consumed, at)
            started = True
            closed = buffer[end:end + 2] == b"--"
            consumed = search_from = end
        if consumed > len(buffer) // 2:  # drop what was handed out, now and then (not per part)
            del buffer[:consumed]
            consumed = 0
    if not closed:
        raise ValueError("the answer stopped before the end of the series (interrupted transfer)")


def _part_body(buffer: bytearray, start: int, stop: int) -> bytes:
    """The body of the part ``buffer[start:stop]`` (after its headers), copied once."""
    header_end = buffer.find(b"\r\n\r\n", start, stop)
    if header_end < 0:
        raise ValueError("a multipart part has no header")
    with memoryview(buffer) as view:
        return bytes(view[header_end + 4:stop])


def _reason(exc) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "No route to host", "timed out",
                  "Connection reset", "Remote end closed connection"):
        if known.lower() in text.lower():
            return known.lower()
    return _first_line(exc)[:120]


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
