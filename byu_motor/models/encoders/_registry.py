"""The encoder registry; ``i3d-<timm name>`` routes to an inflated timm network when not registered exactly."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from byu_motor.models.registry import Registry

I3D_PREFIX = "i3d-"


class EncoderRegistry(Registry[nn.Module]):
    """Exact names first; an unregistered ``i3d-<timm_name>`` builds ``build_i3d(timm_name, ...)``."""

    def get(self, name: str) -> Callable[..., nn.Module]:
        """The factory for ``name`` (see class docstring); unknown names raise ``KeyError`` listing the known ones."""
        if name not in self._items and name.startswith(I3D_PREFIX) and len(name) > len(I3D_PREFIX):
            from byu_motor.models.encoders.i3d import build_i3d

            return functools.partial(build_i3d, name[len(I3D_PREFIX) :])
        return super().get(name)

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata given at registration (empty for routed ``i3d-`` names)."""
        if name not in self._items:
            self.get(name)
            return {}
        return super().meta(name)


ENCODERS = EncoderRegistry("encoder")
