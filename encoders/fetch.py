"""Fetching an encoder's weights from the hub with byte progress and a checksum: what a model fetch
job runs (workers/fetching.py) when the default text encoder is missing (`LOUPE_ALLOW_DOWNLOADS`
auto or true).

The download is huggingface_hub's own `http_get` against `HF_ENDPOINT` (read at each call, so a
mirror or a test's loopback server is honoured): it retries a cut connection in place with an HTTP
Range request, and a fetch restarted after its worker died continues the partial file the same way.
The first request asks for the file's size and LFS sha256 with a short timeout, so a machine with
no network learns it at once instead of waiting on a download. Importing this module is free; its
functions import huggingface_hub and, for OpenCLIP, open_clip (torch): workers call them.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from encoders.backends import layout_of
from encoders.errors import EncoderError
from encoders.spec import EncoderSpec
from encoders.weights import ResolvedWeights, expected_location, fetch_weights

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_SECONDS = 3.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class HubUnreachableError(EncoderError):
    code = "model_hub_unreachable"


class WeightsChecksumError(EncoderError):
    code = "encoder_weights_checksum"


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    size: int | None
    sha256: str | None  # the LFS object id the hub publishes; None for a file kept outside LFS


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def unreachable_message(spec: EncoderSpec, endpoint: str, error: object) -> str:
    location = expected_location(spec)
    return (f"No model hub answered at {endpoint} within {PROBE_SECONDS:g} s ({error}): downloads need a network; "
            f"put the weights at {location.describe()} or set LOUPE_ALLOW_DOWNLOADS=false to stop trying.")


def hub_probe(spec: EncoderSpec) -> None:
    """Raise HubUnreachableError within PROBE_SECONDS when nothing answers at the hub's address. Any
    HTTP answer, an error status included, means a hub is there. Asked before anything imports a
    backend's library: on a machine with no network the job then ends without loading torch into
    the worker that runs it (that process keeps it for good)."""
    endpoint = hub_endpoint()

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=PROBE_SECONDS).close()
        except urllib.error.HTTPError:
            pass  # it answered

    # A thread bounds the wait even where name resolution ignores the socket timeout; it is left
    # behind (not joined) when it overruns.
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(ask).result(timeout=PROBE_SECONDS + 1)
    except FutureTimeout as error:
        raise HubUnreachableError(unreachable_message(spec, endpoint, "timed out")) from error
    except (OSError, ValueError) as error:  # URLError, refused, no such host, a socket timeout, a bad address
        raise HubUnreachableError(unreachable_message(spec, endpoint, getattr(error, "reason", error))) from error
    finally:
        pool.shutdown(wait=False)


def hub_file(spec: EncoderSpec) -> HubFile | None:
    """The checkpoint to download and what the hub says of it (size, sha256); None when the
    family names no hub file for this spec. Raises HubUnreachableError within PROBE_SECONDS when
    no hub answers: the first request is this one."""
    # huggingface_hub: worker tier only (requirements/worker.txt)
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    source = layout_of(spec.backend).hub_files(spec)
    if source is None:
        return None
    repo_id, names = source
    endpoint = hub_endpoint()
    for name in names:
        url = hf_hub_url(repo_id, name, endpoint=endpoint)
        # A thread bounds the wait even where name resolution ignores the socket timeout; it is
        # left behind (not joined) when it overruns.
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            metadata = pool.submit(get_hf_file_metadata, url, timeout=PROBE_SECONDS).result(timeout=PROBE_SECONDS + 1)
        except EntryNotFoundError:
            continue  # the repository keeps its checkpoint under the next name
        except FutureTimeout as error:
            raise HubUnreachableError(unreachable_message(spec, endpoint, "timed out")) from error
        except Exception as error:  # the hub client raises many kinds; only connection failures mean "no hub"
            if _is_connection_error(error):
                raise HubUnreachableError(unreachable_message(spec, endpoint, error)) from error
            raise
        finally:
            pool.shutdown(wait=False)
        etag = (metadata.etag or "").lower()
        return HubFile(repo_id, name, metadata.size, etag if _SHA256.match(etag) else None)
    raise EncoderError(f"The hub at {endpoint} has none of {', '.join(names)} in {repo_id} for {spec}.",
                       extra={"spec": str(spec), "repo_id": repo_id})


def fetch_with_progress(spec: EncoderSpec, *, progress: Progress) -> ResolvedWeights:
    """Download `spec`'s weights into the models dir, reporting bytes, and check their sha256."""
    target = hub_file(spec)
    if target is None:
        return fetch_weights(spec)  # the family's own fetch: no byte progress, no checksum to compare
    # huggingface_hub: worker tier only (requirements/worker.txt)
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    directory = expected_location(spec).directory
    partial = partial_path(directory, target)
    partial.parent.mkdir(parents=True, exist_ok=True)
    # What an interrupted fetch (its worker killed) left is continued with a Range request:
    # hf_hub_download would start over, as it keeps no partial file across processes.
    start = partial.stat().st_size if partial.is_file() else 0
    if target.size is not None and start > target.size:
        start = 0
    total = target.size or 0
    progress(start, max(total, start))
    with open(partial, "r+b" if start else "wb") as stream:
        stream.truncate(start)
        stream.seek(start)
        http_get(hf_hub_url(target.repo_id, target.filename, endpoint=hub_endpoint()), stream, resume_size=start,
                 headers=build_hf_headers(), expected_size=target.size, tqdm_class=_progress_class(progress, total))
    if target.sha256:
        actual = file_sha256(partial)
        if actual != target.sha256:
            partial.unlink(missing_ok=True)
            raise WeightsChecksumError(
                f"{target.filename} from {target.repo_id} does not match the sha256 the hub publishes "
                f"({actual} instead of {target.sha256}); the file was deleted. Fetch it again, or put a good copy at "
                f"{expected_location(spec).describe()}.", extra={"spec": str(spec)})
    path = directory / target.filename
    partial.replace(path)  # whole and checked: only now does the loader see it
    progress(path.stat().st_size, path.stat().st_size)
    return ResolvedWeights(path, "download", (path,))


def partial_path(directory: Path, target: HubFile) -> Path:
    """Where a download grows until it is whole; named by the file's sha256, so a partial file of
    another version is never continued."""
    return directory / ".partial" / f"{target.filename}.{target.sha256 or 'unversioned'}.incomplete"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(8 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_connection_error(error: BaseException) -> bool:
    """Connection refused, no such host, a timeout: whatever the HTTP client calls them."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ConnectError", "TimeoutException", "ConnectionError", "OSError", "NetworkError"})


def _progress_class(progress: Progress, total: int) -> type:
    from tqdm import tqdm  # comes with huggingface_hub: worker tier only

    class HubProgress(tqdm):
        """huggingface_hub reports each chunk through its tqdm class: the bytes go to the job row."""

        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True  # no terminal bar in a worker's log
            super().__init__(*args, **kwargs)
            self.bytes = kwargs.get("initial") or 0

        def update(self, n=1):
            # A retry that restarts from zero reports a negative step: the count follows it.
            self.bytes = max(0, self.bytes + (n or 0))
            progress(self.bytes, max(total, self.bytes))

    return HubProgress
