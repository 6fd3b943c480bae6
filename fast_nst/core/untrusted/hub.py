"""Model files on the Hugging Face Hub, named ``hf://OWNER/REPO/FILE[@REVISION][#sha256=HEX]``.

:func:`hub_file` turns such a reference into a local file with the ``huggingface_hub`` package
(an optional extra: ``pip install -e ".[hub]"``): downloaded once into its cache
(``~/.cache/huggingface/hub``, or ``HF_HUB_CACHE``), used from there without a network when
``HF_HUB_OFFLINE=1`` is set (or when the Hub cannot be reached and the file is cached: a
connection to the Hub's host is tried for a few seconds first, where the library's own retries
would take over 20 seconds to give up). A
``REVISION`` (a branch, tag or commit) pins what is fetched; a 40-digit commit hash is never
looked up again once cached. ``#sha256=HEX`` makes the file's SHA-256 a condition of its use.

The reference is user input and the file outside data: the names are checked before the Hub
is asked (no ``..``, no absolute paths, the Hub's own name rules), and the downloaded file
is read like any other model file (:mod:`.archives`, :mod:`.safetensors_header`). Every
failure is one :class:`~fast_nst.core.errors.DownloadError` saying what to do.
"""

from __future__ import annotations

import importlib
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import CheckpointError, DownloadError
from .downloads import sha256_file
from .archives import check_file_size
from .text import shown

__all__ = ["HUB_PREFIX", "HubRef", "INSTALL_HINT", "PROBE_SECONDS", "hub_file", "hub_reachable", "is_hub_ref",
           "parse_hub_ref"]

HUB_PREFIX = "hf://"
#: What to run when ``huggingface_hub`` is missing.
INSTALL_HINT = 'pip install huggingface_hub (or pip install -e ".[hub]")'
# The Hub's rules for user, organisation and repository names (at most 96 characters; letters,
# digits, '-', '_' and '.'; not starting with '-' or '.'), a file path of such parts (one more
# character set: spaces are allowed on the Hub but not here), a revision (branch, tag, commit,
# or refs/pr/N).
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}"
_REF = re.compile(rf"^hf://(?P<owner>{_NAME})/(?P<repo>{_NAME})/(?P<file>{_NAME}(?:/{_NAME}){{0,15}})"
                  r"(?:@(?P<revision>[A-Za-z0-9_.][A-Za-z0-9_./-]{0,127}))?(?:#sha256=(?P<sha256>[0-9a-f]{64}))?$")
_MAX_TEXT = 512
# A revision that is a commit hash (40 lower-case hex digits, as the Hub writes them).
_COMMIT = re.compile(r"[0-9a-f]{40}")
# Seconds a connection to the Hub's host may take before the Hub counts as unreachable: it
# answers in well under a second where there is a network; without one, huggingface_hub's own
# retries take ~23 s to give up (and log each try).
PROBE_SECONDS = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@dataclass(frozen=True)
class HubRef:
    """A checked ``hf://`` reference."""
    repo_id: str
    filename: str
    revision: Optional[str]
    sha256: Optional[str]

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HUB_PREFIX}{self.repo_id}/{self.filename}{rev}"


def is_hub_ref(text: object) -> bool:
    """Whether ``text`` (a path a user gave) is meant as an ``hf://`` reference."""
    return isinstance(text, str) and text.startswith(HUB_PREFIX)


def parse_hub_ref(text: str) -> HubRef:
    """The parts of ``hf://OWNER/REPO/FILE[@REVISION][#sha256=HEX]``; :class:`DownloadError`
    saying the expected form for anything else (``..`` parts included)."""
    m = _REF.match(text) if len(text) <= _MAX_TEXT else None
    if m is None or ".." in m.group("file").split("/") or (m.group("revision") or "").endswith((".", "/")):
        raise DownloadError(f"{shown(text, 120)}: not a Hugging Face Hub reference; write "
                            "hf://OWNER/REPO/FILE, optionally with @REVISION (a branch, tag or commit) and "
                            "#sha256=HEX (64 lower-case hex digits), e.g. hf://someone/wave/wave.safetensors@v1.")
    return HubRef(f"{m.group('owner')}/{m.group('repo')}", m.group("file"), m.group("revision"), m.group("sha256"))


def _hub() -> Any:
    try:  # an optional extra: imported only when an hf:// reference is used
        return importlib.import_module("huggingface_hub")
    except ImportError:
        raise DownloadError(f"hf:// model references need the huggingface_hub package: {INSTALL_HINT}.") from None


def hub_reachable(endpoint: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the host of ``endpoint`` (the Hub's URL) opens within
    ``timeout`` seconds. Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) a direct connection
    proves nothing: True without trying."""
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return True
    url = urllib.parse.urlsplit(endpoint)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except (OSError, ValueError):  # no route, refused, timed out, name unknown; a malformed URL
        return False
    return True


def hub_file(text: str, max_bytes: int, cache_dir: Optional[str | Path] = None) -> Path:
    """The local file of the reference ``text`` (see the module), fetched into the Hub cache
    (``cache_dir``, default the library's) unless it is there; refused when over
    ``max_bytes`` or when its SHA-256 differs from the reference's ``#sha256=``."""
    ref = parse_hub_ref(text)
    hub = _hub()
    errors = importlib.import_module("huggingface_hub.errors")
    constants = importlib.import_module("huggingface_hub.constants")
    offline = bool(constants.HF_HUB_OFFLINE)
    # Unreachable: the cached copy if there is one (what the library falls back to after its retries).
    # A commit the cache holds needs no network at all (the library returns it at once): no probe.
    # One it does not hold is probed like any reference (else 20 s of retries without a network).
    pinned = ref.revision is not None and _COMMIT.fullmatch(ref.revision) is not None
    held = pinned and isinstance(hub.try_to_load_from_cache(ref.repo_id, ref.filename, cache_dir=cache_dir,
                                                            revision=ref.revision), str)
    cached_only = not offline and not held and not hub_reachable(constants.ENDPOINT)
    try:
        path = Path(hub.hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision, cache_dir=cache_dir,
                                        library_name="fast-nst", local_files_only=cached_only))
    except errors.LocalEntryNotFoundError:
        fix = ("HF_HUB_OFFLINE is set: run once without it, with a network, to download it" if offline else
               "the Hub cannot be reached: check the network connection (and HTTPS_PROXY behind a proxy)")
        raise DownloadError(f"{ref}: not in the local Hugging Face cache and {fix}; or download the file "
                            "and give its path.") from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError):
        raise DownloadError(f"{ref}: no such repository on the Hub, or it is private or gated: check the name, "
                            "or log in with: hf auth login") from None
    except errors.RevisionNotFoundError:
        raise DownloadError(f"{ref}: the repository has no revision {shown(ref.revision or 'main', 60)}; "
                            "give a branch, tag or commit it has.") from None
    except errors.EntryNotFoundError:
        raise DownloadError(f"{ref}: the repository has no file {shown(ref.filename, 100)} at this revision; "
                            "list its files on its Hub page.") from None
    except (errors.HfHubHTTPError, OSError, ValueError) as e:
        raise DownloadError(f"{ref}: cannot download it ({shown(str(e).splitlines()[0] if str(e) else type(e).__name__, 160)}); "
                            "check the network, or set HF_HUB_OFFLINE=1 to use the cached copy.") from None
    _check(path, ref, max_bytes)
    return path


def _check(path: Path, ref: HubRef, max_bytes: int) -> None:
    try:
        check_file_size(path, max_bytes, "model file")
    except CheckpointError as e:  # in the archive's words: say it of the reference
        raise DownloadError(f"{ref}: {e}") from None
    if ref.sha256 is not None:
        got = sha256_file(path)
        if got != ref.sha256:
            raise DownloadError(f"{ref}: its SHA-256 is {got}, not the {ref.sha256} the reference asks for: "
                                "the file on the Hub changed (or the cached copy is damaged). Pin a commit "
                                "(@REVISION) that has the expected file, or update the checksum if you trust it.")
