"""Where a backbone's pretrained weights are: on this machine first (torch hub's checkpoint
folder, ``torch.hub.get_dir()/checkpoints``, and the Hugging Face cache), else downloaded; an
offline machine without the file gets a message that says which file to put where."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

HF_FILES = ("model.safetensors", "pytorch_model.bin")
SMALL_TORCHVISION = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
                     "efficientnet_b0", "resnet18", "resnet50", "regnet_y_400mf",
                     "convnext_tiny")
"""The torchvision backbones looked for on the machine when a run could use pretrained
features (``torchvision_on_machine``): small ImageNet classifiers that run on a CPU."""


def hub_checkpoints() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _file_name(url: str) -> str:
    return Path(urlparse(url).path).name


def torchvision_urls(model_name: str) -> list[str]:
    """The URLs of ``model_name``'s torchvision weights, its DEFAULT first."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(model_name)
    return list(dict.fromkeys([weights.DEFAULT.url, *(w.url for w in weights)]))


def torchvision_on_machine(models: tuple[str, ...] = SMALL_TORCHVISION) -> list[str]:
    """Those of ``models`` whose torchvision weights file (any of its versions) is in torch
    hub's checkpoint folder, in the order given."""
    folder = hub_checkpoints()
    files = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    return [m for m in models if files & {_file_name(u) for u in torchvision_urls(m)}]


def use_instead(models: list[str]) -> str:
    """How to use the first of ``models`` (torchvision backbones whose weights are on this
    machine) instead, as ``--set`` options; empty when there is none."""
    if not models:
        return ""
    return (f"torchvision:{models[0]} weights are on this machine: --set "
            f"'model.backbone.type=\"torchvision:{models[0]}\"' --set "
            "model.backbone.pretrained=true")


def _not_here(model_name: str, files: list[str], exc: Exception) -> ValueError:
    found = use_instead([m for m in torchvision_on_machine() if m != model_name])
    return ValueError(
        f"the pretrained weights of {model_name!r} are not on this machine and could not be "
        f"downloaded ({str(exc).splitlines()[0]}). Put the file ({' or '.join(files)}) into "
        f"{hub_checkpoints()} (torch hub's cache; set TORCH_HOME to move it), or set "
        "pretrained = false and weights = \"PATH/TO/FILE\"" + (f"; {found}" if found else ""))


def torchvision_state(model_name: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of ``model_name``'s torchvision weights and the file it came from: the
    first of its weight files found in torch hub's checkpoint folder, else its DEFAULT weights
    downloaded there. Raises ``ValueError`` saying where to put the file when neither works."""
    urls = torchvision_urls(model_name)
    for url in urls:
        local = hub_checkpoints() / _file_name(url)
        if local.is_file():
            return torch.load(local, map_location="cpu", weights_only=True), local.name
    try:
        state = torch.hub.load_state_dict_from_url(urls[0], map_location="cpu",
                                                   weights_only=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise _not_here(model_name, [_file_name(u) for u in urls], exc) from None
    return state, _file_name(urls[0])


def timm_local_file(cfg: Any) -> Path | None:
    """A file of timm pretrained config ``cfg`` already on this machine: in the Hugging Face
    cache (its ``hf_hub_id``) or in torch hub's checkpoint folder (its ``url``)."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for name in HF_FILES:
            found = try_to_load_from_cache(hub_id, name)
            if isinstance(found, str):
                return Path(found)
    url = getattr(cfg, "url", None)
    if url and (hub_checkpoints() / _file_name(url)).is_file():
        return hub_checkpoints() / _file_name(url)
    return None


def timm_host(cfg: Any) -> str | None:
    """The host timm downloads pretrained config ``cfg``'s weights from."""
    if getattr(cfg, "hf_hub_id", None):
        return "huggingface.co"
    url = getattr(cfg, "url", None)
    return urlparse(url).hostname if url else None


def reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on port 443 within ``timeout`` seconds: an offline machine is
    told so at once, instead of after a download client's retries (about 45 s for timm)."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def timm_missing(model_name: str, cfg: Any, exc: Exception) -> ValueError:
    """The message for timm weights neither cached nor downloadable."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    url = getattr(cfg, "url", None)
    where = [f"the Hugging Face cache (huggingface-cli download {hub_id})" if hub_id else "",
             f"{hub_checkpoints() / _file_name(url)}" if url else ""]
    found = use_instead(torchvision_on_machine())
    return ValueError(
        f"the pretrained weights of {model_name!r} are not on this machine and could not be "
        f"downloaded ({str(exc).splitlines()[0]}). Put them into "
        f"{' or '.join(w for w in where if w) or 'a file'}, or set pretrained = false and "
        "weights = \"PATH/TO/FILE\"" + (f"; {found}" if found else ""))
