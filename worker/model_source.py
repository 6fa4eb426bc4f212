"""Before loading a model: is it there? A clear `ModelNotFound` instead of minutes of hub retries
and a transformers traceback (the default model is a hub id, and GPU clusters are often offline).

A local directory must hold a `config.json`. A hub id is fine when it is in the local cache; if
not, the hub must answer for it: offline (`HF_HUB_OFFLINE=1`), unreachable, or not knowing the id
fails at once, naming the fix.
"""

from __future__ import annotations

from pathlib import Path

from rmscore.errors import ModelNotFound

PROBE_TIMEOUT_S = 5.0
FIX = "set RMSCORE_MODEL (or --model) to a model directory; `rmscore make-tiny-model models/tiny` builds a test model"


def _looks_like_path(model: str) -> bool:
    """A hub id is `name` or `org/name`; anything else (./x, /x, ~/x, a/b/c) is meant as a directory."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def check_model_available(model: str) -> None:
    """Raise ModelNotFound, with the fix, unless `from_pretrained(model)` can find the model."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{model} is a directory without a model in it (no config.json)\nfix: {FIX}")
        return
    if path.exists() or _looks_like_path(model):
        raise ModelNotFound(f"no model directory at {model}\nfix: {FIX}")
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFound(
            f"model {model} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set\nfix: {FIX}"
        )
    _probe_hub(model, constants.ENDPOINT)


def _probe_hub(model: str, endpoint: str) -> None:
    """One short request: is the hub there, and does it know the model? (from_pretrained retries for minutes)."""
    import httpx
    from huggingface_hub import get_token

    token = get_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(f"{endpoint}/api/models/{model}", headers=headers, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as e:
        raise ModelNotFound(
            f"model {model} is not in the local cache and the Hugging Face hub ({endpoint}) is unreachable: "
            f"{type(e).__name__}\nfix: {FIX}"
        ) from None
    if r.status_code in (401, 403):
        raise ModelNotFound(
            f"the hub refuses model {model} without access ({r.status_code})\nfix: set HF_TOKEN, or {FIX}"
        )
    if r.status_code == 404:
        raise ModelNotFound(f"the hub has no model {model}\nfix: {FIX}")
