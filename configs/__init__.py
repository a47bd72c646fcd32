"""ml_collections configs: `default` holds every field; the others override it."""
