"""Who may publish and play: name rules, address lists (and, later, callbacks)."""
