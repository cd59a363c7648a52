"""`python -m partcrafter_blender.inference.worker`: run one engine job from stdin."""

from __future__ import annotations

import sys

from .child import main

sys.exit(main())
