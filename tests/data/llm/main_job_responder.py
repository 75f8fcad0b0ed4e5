"""The scripted model of the main-job test: a function of the request, as the scripted LLM server calls it.

It reads the failed log first, then (like a model that guesses) proposes a package that does not exist,
and after that refusal the fix a person would make here: the chip profile pins a torch build this host
cannot install, and the wheel on disk is torch 2.13.0. Other failures follow the playbook candidates.
A user's message is answered in the reply text."""

from fr_agent.playbooks.scripted_llm import follow_candidates, proposed_before, user_context

GUESS = {"name": "install_dependency", "arguments": {"package": "torch-cpu-wheels-zz9", "version": None, "action": "install"}}
FIX = {"name": "install_dependency", "arguments": {"package": "torch", "version": "2.13.0", "action": "downgrade"}}


def respond(request: dict) -> dict:
    context = user_context(request)
    asked = "## Messages from the user" in context
    answer = "About your message: the installer cannot find the torch build the chip profile pins. " if asked else ""
    if "there is no version of torch==" not in context:
        return follow_candidates(request)
    proposed = [args.get("package") for _, args in proposed_before(request)]
    if not proposed:
        return {"content": answer + "Reading the installer log first.",
                "tool_calls": [{"name": "read_log", "arguments": {"log": None, "start": 1, "count": 40}}]}
    if GUESS["arguments"]["package"] not in proposed:
        return {"content": "A CPU wheel package should provide it.", "tool_calls": [GUESS]}
    return {"content": "That package does not exist; pin the torch wheel this host has instead.", "tool_calls": [FIX]}
