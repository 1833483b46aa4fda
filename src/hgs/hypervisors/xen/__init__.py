"""XenServer / XCP-ng through xe over SSH."""
