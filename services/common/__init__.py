"""Helpers shared by the edgesplit services: settings base, auth, body limit, errors, model loading,
the pooled HTTP client base and process helpers for tests and benchmarks."""
