"""Relief: the fast classical CPU preview engine (numpy + Pillow only)."""
