"""The webhook benchmark's baseline site: our settings and middleware, one bare UPDATE view."""
