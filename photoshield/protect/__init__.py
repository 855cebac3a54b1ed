"""Adversarial protections: make AI misuse of a photo fail (built in later issues)."""
