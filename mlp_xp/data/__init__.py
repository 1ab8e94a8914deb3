"""Data: the IDX format, the embedded digits, splits, pixels to inputs, images, downloads.

Images from files need Pillow (:mod:`mlp_xp.data.images`, the ``images`` extra);
:mod:`mlp_xp.data.download` fetches full datasets. Both are imported on use.
"""

from . import digits, embedded, idx, pixels
from .digits import *  # noqa: F403 -- re-exported: see __all__
from .embedded import *  # noqa: F403
from .idx import *  # noqa: F403
from .pixels import *  # noqa: F403

__all__ = [*digits.__all__, *embedded.__all__, *idx.__all__, *pixels.__all__]
