"""Errors the imperative shell turns into readable HTTP answers."""


class RuleViolation(ValueError):
    """A request the rules refuse (invalid transition, unknown estate, missing approval).

    `status` is the HTTP status the API answers with: 409 for a transition the form's
    state does not allow, 403 for a missing approval, 404 for an unknown thing, 422 for
    input the rules reject.
    """

    def __init__(self, message: str, status: int = 409, zh: str | None = None):
        super().__init__(message)
        self.status = status
        self.zh = zh  # the reason in Chinese, for screens people outside the office read
