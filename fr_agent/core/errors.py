"""Errors a user can act on. The CLI prints them as one line and exits non-zero; anything else is a bug."""

import importlib.util


class FrAgentError(Exception):
    """A user-facing failure: bad input, a missing device, an unreadable file."""

    exit_code = 2


class CatalogError(FrAgentError):
    pass


class MissingExtra(FrAgentError):
    """Host-side model work whose packages the base install leaves out (torch, transformers)."""

    def __init__(self, what: str, extra: str = "host"):
        super().__init__(f"{what} needs the {extra} extra: pip install 'fr-agent[{extra}]'")


def require_extra(what: str, *modules: str, extra: str = "host") -> None:
    """MissingExtra unless every module is installed; looked up, not imported (they are heavy)."""
    if any(importlib.util.find_spec(module) is None for module in modules):
        raise MissingExtra(what, extra)


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
