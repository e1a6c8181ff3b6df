"""One line per check: `ok`, `FAIL` or `note`, and a summary at the end."""


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, message: str) -> None:
        self.passed += 1
        print(f"  ok   {message}", flush=True)

    def fail(self, message: str) -> None:
        self.failed += 1
        print(f"  FAIL {message}", flush=True)

    def note(self, message: str) -> None:
        print(f"  note {message}", flush=True)

    def finish(self) -> int:
        """Prints the counts; the exit code (1 if anything failed)."""
        print(f"  {self.passed} checks passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0
