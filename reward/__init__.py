"""reward: see DESIGN.md §2 for what this package owns."""
