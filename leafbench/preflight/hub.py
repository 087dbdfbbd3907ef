"""One question to the Hugging Face hub, answered in a line: can this repository be used?

The hub client reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HOME once, when it is imported; a
preflight reads them when it runs (a test, or a user who exports a token after starting Python,
gets what the environment says now) and passes them to the client explicitly.

The probe downloads one small file (a model's config.json, a dataset's README.md) at the
revision given, into the ordinary hub cache, with a short timeout. That is the cheapest request
which exercises everything a real download needs — the repository exists, the revision exists,
the credentials are accepted, the connection works — and `from_pretrained` reuses the file.
Where the hub cannot be reached (or HF_HUB_OFFLINE is set), the local cache answers instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

TRUTHY = {"1", "true", "yes", "on"}
DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUTHY


def cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def has_token() -> bool:
    from huggingface_hub import get_token

    return bool(os.environ.get("HF_TOKEN") or get_token())


def probe(repo_id: str, *, repo_type: str = "model", revision: str | None = None,
          filename: str = "config.json", timeout_s: float = 10.0) -> str | None:
    """None if `repo_id` can be used at `revision`, else what is wrong and what to do.

    One HEAD request without retries (the client's own download retries for tens of seconds
    when nothing is cached), then the download of the small file; a connection that fails
    falls back to the cache, as loading the model would."""
    from huggingface_hub import errors

    what = "dataset" if repo_type == "dataset" else "model"
    at = f" at revision {revision!r}" if revision else ""
    try:
        with _quiet_client():
            _ask(repo_id, repo_type, revision, filename, timeout_s)
        return None
    except errors.HFValidationError:
        return (f"neither an existing directory nor a valid hub id ('owner/name'); give a local "
                f"{what} directory or a hub id")
    except errors.GatedRepoError:
        return (f"a gated {what}: the hub at {endpoint()} refuses it "
                f"{'to this token' if has_token() else 'without a token'}; accept its terms on "
                f"{endpoint()}/{_page(repo_id, repo_type)} and set HF_TOKEN (or `hf auth login`)")
    except errors.RepositoryNotFoundError:
        if has_token():
            return (f"not found on the hub at {endpoint()} with this token: check the id, or "
                    "that the token (HF_TOKEN) may read this private repository")
        return (f"not found on the hub at {endpoint()}, or private/gated and no token was sent: "
                "check the id; for a private or gated repository set HF_TOKEN (or `hf auth login`)")
    except errors.RevisionNotFoundError:
        return f"the hub has no revision {revision!r} of this {what}; give a branch, tag or commit it has"
    except errors.RemoteEntryNotFoundError:
        if repo_type == "dataset":
            return None  # the repository answered; a dataset without this file is still usable
        return f"the hub repository{at} has no {filename}: not a transformers model"
    except errors.HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = ("the token (HF_TOKEN) has no access to it" if status == 403
                else "the hub may be down; try again later")
        return f"the hub at {endpoint()} answered HTTP {status} for it: {hint}"
    except _Dropped as err:
        return (f"the connection to the hub at {endpoint()} dropped while downloading "
                f"{err} ({_cause(err)}); check the connection or HF_ENDPOINT and try again")
    except _Unreachable as err:
        if offline():
            return (f"HF_HUB_OFFLINE is set and the {what}{at} is not in the local cache "
                    f"({cache_dir()}): download it once where the hub is reachable "
                    f"(`hf download {repo_id}`{' --repo-type dataset' if what == 'dataset' else ''})"
                    " or unset HF_HUB_OFFLINE")
        return (f"the hub at {endpoint()} cannot be reached ({_cause(err)}) and the {what}{at} is "
                f"not in the local cache ({cache_dir()}): check the connection or HF_ENDPOINT, "
                "or set HF_HUB_OFFLINE=1 with the files cached")


class _Unreachable(Exception):
    """The hub did not answer (or may not be asked) and the cache has no copy."""


class _Dropped(Exception):
    """The hub answered, then dropped the connection during the download."""


def _ask(repo_id: str, repo_type: str, revision: str | None, filename: str,
         timeout_s: float) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    if not offline():
        url = hf_hub_url(repo_id, filename, endpoint=endpoint(), repo_type=repo_type,
                         revision=revision)
        try:
            get_hf_file_metadata(url, timeout=timeout_s, endpoint=endpoint())
        except _CONNECTION_ERRORS() as err:
            if _cached(repo_id, filename, repo_type, revision) is None:
                raise _Unreachable(str(err)) from err
            return
        try:
            hf_hub_download(repo_id, filename, endpoint=endpoint(), cache_dir=cache_dir(),
                            etag_timeout=timeout_s, repo_type=repo_type, revision=revision)
        except _CONNECTION_ERRORS() as err:  # it answered, then dropped: not usable now
            raise _Dropped(filename) from err
        return
    if _cached(repo_id, filename, repo_type, revision) is None:
        raise _Unreachable("HF_HUB_OFFLINE is set")


def _CONNECTION_ERRORS() -> tuple[type[BaseException], ...]:  # noqa: N802 - a constant, lazily
    import httpx2
    from huggingface_hub import errors

    return (httpx2.TransportError, errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled,
            ConnectionError, TimeoutError)


def _cached(repo_id: str, filename: str, repo_type: str, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir(), revision=revision,
                                   repo_type=repo_type)
    return found if isinstance(found, str) else None


@contextlib.contextmanager
def _quiet_client() -> Iterator[None]:
    """The client logs each retry and resume as a warning; the preflight's line says it all."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def dataset_cached(repo_id: str) -> bool:
    """Whether a hub dataset is in the hub cache or the `datasets` library's own cache (which
    is what an offline evaluation reads)."""
    owner_name = repo_id.replace("/", "--")
    if (cache_dir() / f"datasets--{owner_name}").is_dir():
        return True
    home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface")
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets").expanduser()
    prefix = repo_id.replace("/", "___")
    return datasets_cache.is_dir() and any(p.name.startswith(prefix) for p in datasets_cache.iterdir())


def _page(repo_id: str, repo_type: str) -> str:
    return f"datasets/{repo_id}" if repo_type == "dataset" else repo_id


def _cause(err: BaseException) -> str:
    """The innermost reason, one line: a connection error hides under two wrappers."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = " ".join(str(err).split())[:160]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
