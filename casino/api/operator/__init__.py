"""The operator API (SPEC §13): reads, reports and player controls, scoped to the calling operator."""
