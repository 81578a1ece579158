"""A lab's patch-feature files (CLAM, TRIDENT) as a slide's input, and the maps a MIL head draws from them."""
