"""Everything that writes into a Blender scene (needs bpy)."""
