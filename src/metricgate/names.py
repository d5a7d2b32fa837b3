"""Readable random run names ("bold-owl-42"), as MLflow gives runs created without one."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "able", "bold", "brave", "bright", "calm", "clever", "crisp", "daring", "eager", "fair",
    "fancy", "gentle", "glad", "grand", "honest", "jolly", "keen", "kind", "lively", "lucky",
    "merry", "nimble", "noble", "polite", "proud", "quick", "quiet", "rare", "royal", "shy",
    "silent", "sleek", "smart", "snappy", "steady", "sunny", "swift", "tidy", "vivid", "witty",
)
_NOUNS = (
    "ant", "bat", "bear", "bee", "boar", "cat", "colt", "crab", "crow", "deer", "doe", "dove",
    "duck", "eel", "elk", "finch", "fox", "frog", "gnu", "goat", "hare", "hawk", "hen", "jay",
    "koi", "lark", "lynx", "mole", "moth", "newt", "owl", "ox", "ram", "seal", "slug", "snail",
    "squid", "swan", "toad", "wasp", "whale", "wolf", "worm", "yak",
)


def random_run_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000)}"
