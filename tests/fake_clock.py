"""A clock the test moves by hand, for code that takes ``clock: Callable[[], float]`` (the
authenticator's cache, the login limiter): ``clock.t += 5`` is five seconds later."""

from __future__ import annotations


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
