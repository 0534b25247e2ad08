"""Reports and figures. Every script here reads the tidy tables under reports/<profile>/tables/ and
nothing else (never checkpoints or logs)."""
