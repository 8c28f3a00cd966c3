"""Conformance tests: the venue adapters held to the venues' own SDKs run under node (GMX's
@gmx-io/sdk, Gains Network's @gainsnetwork/sdk); sdk.py holds what they share."""
