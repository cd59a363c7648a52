"""Menu entries (F3 searches menus): View3D > Add, File > Import, File > Export, and
View3D > Object for working with the parts of a result."""

from __future__ import annotations

import bpy

from ..operators import explode, export_glb, generate, import_parts, regenerate


def _add_menu(self: bpy.types.Menu, _context: bpy.types.Context) -> None:
    self.layout.separator()
    generate.menu_items(self.layout)


def _import_menu(self: bpy.types.Menu, _context: bpy.types.Context) -> None:
    import_parts.menu_items(self.layout)
    generate.menu_items(self.layout)


def _object_menu(self: bpy.types.Menu, _context: bpy.types.Context) -> None:
    self.layout.separator()
    explode.menu_items(self.layout)
    regenerate.menu_items(self.layout)


def _export_menu(self: bpy.types.Menu, _context: bpy.types.Context) -> None:
    export_glb.menu_items(self.layout)


def register() -> None:
    bpy.types.VIEW3D_MT_add.append(_add_menu)
    bpy.types.TOPBAR_MT_file_import.append(_import_menu)
    bpy.types.TOPBAR_MT_file_export.append(_export_menu)
    bpy.types.VIEW3D_MT_object.append(_object_menu)


def unregister() -> None:
    bpy.types.VIEW3D_MT_object.remove(_object_menu)
    bpy.types.TOPBAR_MT_file_export.remove(_export_menu)
    bpy.types.TOPBAR_MT_file_import.remove(_import_menu)
    bpy.types.VIEW3D_MT_add.remove(_add_menu)
