"""PartCrafter for Blender: one reference image in, a model made of separate named parts out.

Importing this package never imports bpy (the server and the command line import
`partcrafter_blender.inference` through it); Blender-facing modules are imported in
register()/unregister() only.
"""

from __future__ import annotations


def register() -> None:
    from . import operators, preferences, ui

    preferences.register()
    operators.register()
    ui.register()


def unregister() -> None:
    from . import operators, preferences, ui

    ui.unregister()
    operators.unregister()
    preferences.unregister()
