"""Door-camera frames for the face tests: a textured scene with no face in it.

A blank frame is refused before detection (it has no content, see
:func:`twinshot.preprocessing.check_content`), so "no face" is tested on a picture with
content: large grey tiles and a gradient, as a wall and a door might look.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def faceless_scene(width: int = 640, height: int = 480, tile: int = 80) -> Image.Image:
    """An RGB ``width`` x ``height`` frame of alternating grey tiles over a gradient."""
    y, x = np.mgrid[0:height, 0:width]
    tiles = ((x // tile + y // tile) % 2) * 90 + 60
    grey = np.clip(tiles + (x * 40) // max(width, 1), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey, grey, grey], axis=-1), "RGB")
