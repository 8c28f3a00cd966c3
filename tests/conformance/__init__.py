"""Conformance tests: the GMX adapter held to GMX's own SDK (@gmx-io/sdk) run under node."""
