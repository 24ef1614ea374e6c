"""The error tree (callgate/errors.py): every error the service raises on purpose is in it, and
an error's fields are given when it is raised, never patched onto a caught one."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

from callgate import errors

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = SRC / "callgate"
# Exception classes outside the tree, and why.
OUTSIDE = {
    # Private to ssh.py: SshPool.run catches both and raises from the tree.
    "callgate.pbx.ssh._NotSent",
    "callgate.pbx.ssh._MaybeStarted",
    # A pure parser's ValueError (no host, no decision); its callers translate it at once.
    "callgate.pbx.console_framing.ConsoleGarbage",
    # A pure function's ValueErrors (a stored password it cannot open); calls/targets.py
    # translates them at once into a ConfigurationError naming the host.
    "callgate.domain.sealed.KeyMissing",
    "callgate.domain.sealed.WrongKey",
    # The HTTP layer's own answers (404, 409, 422 of the API), not errors of the service.
    "callgate.api.v1.problems.ApiProblem",
    # Private to ws.py: a WebSocket's close code and reason, caught there and sent as the close.
    "callgate.api.v1.ws._Closing",
    # A webhook target refused (calls/webhooks.py, checked again by calls/webhook_http.py at
    # every connection): an InvalidInput when an endpoint is added, a failed attempt when a
    # delivery is tried; and a delivery that got no answer (calls/webhook_http.py), a failed
    # attempt. The dispatcher records both; neither leaves the use cases.
    "callgate.calls.webhooks.TargetRefused",
    "callgate.calls.webhook_http.DeliveryFailed",
}
FIELDS = {"host", "completed", "maybe_executed", "answers"}


def _modules() -> list[str]:
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__main__" or parts[:3] == ["callgate", "db", "migrations"]:
            continue  # running them is what importing them does
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def test_every_exception_class_is_in_the_tree() -> None:
    outside = set()
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            if not issubclass(cls, errors.CallgateError):
                outside.add(f"{name}.{cls_name}")
    assert outside == OUTSIDE


def test_no_caught_error_is_patched() -> None:
    """``exc.completed = …``, ``exc.host = …``: an error's fields are its constructor's (the
    SSH pool hands one error to several callers; ``PbxError.after`` makes a new one)."""
    patched = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = [t for target in node.targets for t in _flat(target)]
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = _flat(node.target)
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr in FIELDS
                    and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                ):
                    patched.append(f"{path.relative_to(SRC)}:{target.lineno}")
    assert patched == ["callgate/errors.py:" + str(_after_line())]


def _flat(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, ast.Tuple | ast.List):
        return [t for element in target.elts for t in _flat(element)]
    return [target]


def _after_line() -> int:
    """The one assignment allowed: ``PbxError.after`` sets the count on the copy it makes."""
    source = inspect.getsource(errors)
    return next(
        number
        for number, line in enumerate(source.splitlines(), start=1)
        if "later.completed =" in line
    )


def test_after_is_a_new_error_caused_by_the_first() -> None:
    first = errors.SshConnectTimeout("SSH connection to h timed out", host="h")
    assert first.after(0) is first
    later = first.after(2)
    assert type(later) is errors.SshConnectTimeout and later.__cause__ is first
    assert (later.completed, later.host, later.message) == (2, "h", first.message)
    assert first.completed == 0
    resend = errors.SafeToResend("ended", "h", ["", "x"]).after(1)
    assert resend.answers == ["", "x"] and resend.completed == 3


def test_the_outcome_follows_the_class() -> None:
    """Nothing sent, maybe sent, and refused by the dialplan: decided by ``outcome`` alone."""
    assert errors.HostFailing("open").outcome == "not_dialled"
    assert errors.PbxUnreachable("down").outcome == "not_dialled"
    assert errors.ConsoleUnavailable("none").outcome == "not_dialled"
    assert errors.AsteriskNotRunning("down").outcome == "not_dialled"
    assert errors.AsteriskWentAway("gone").outcome == "unknown"
    assert errors.CommandTimeout("slow").outcome == "unknown"
    assert errors.CallNotCreated("refused").outcome == "failed"
    assert errors.error_class("asterisk_went_away") is errors.AsteriskWentAway
    assert errors.error_class("pbx_host_failing") is errors.HostFailing
