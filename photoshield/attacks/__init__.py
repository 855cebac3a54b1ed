"""photoshield.attacks."""
