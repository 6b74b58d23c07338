"""The bus: channel registry, streams with their GOP cache, and bounded readers."""
