"""The synthetic totesys source: a deterministic generator, a snapshot loader, mutations."""
