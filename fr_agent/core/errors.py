"""Errors a user can act on. The CLI prints them as one line and exits non-zero; anything else is a bug."""


class FrAgentError(Exception):
    """A user-facing failure: bad input, a missing device, an unreadable file."""

    exit_code = 2


class CatalogError(FrAgentError):
    pass


class UnknownChipError(FrAgentError):
    pass


class UnknownModelError(FrAgentError):
    pass


class ToolRejected(FrAgentError):
    """A planner's tool call that failed validation; fed back to the planner, never applied."""

    exit_code = 3


class AlreadyTried(ToolRejected):
    """A proposed fix this run already tried (whatever its outcome); never applied twice."""

    def __init__(self, label: str):
        super().__init__(f"already tried in this run: {label}")
        self.label = label


class RunFailed(FrAgentError):
    """The loop stopped without a passing migration (unrepairable, limits, declined fixes)."""

    exit_code = 1


class RunPaused(FrAgentError):
    """The run stopped before its end on purpose (an LLM token budget spent); its checkpoint stays resumable."""

    exit_code = 75  # EX_TEMPFAIL: try again later (`fr-agent resume`)
