"""Settlement records (resolve / void) live here; built out with the settlement capability."""
