"""Market-data tables (catalogue sync state, ticks, resolution proposals) come with the feed."""
